//! `Money`: an exact amount of one currency, counted in that currency's minor units.
//!
//! What the type guarantees:
//! - amounts are whole numbers of minor units (cents for BRL, yen for JPY, fils for BHD) held
//!   in an `i64`, so no floating-point rounding ever happens;
//! - arithmetic never wraps silently and never mixes currencies: [`Money::checked_add`],
//!   [`Money::checked_sub`], [`Money::checked_mul`] and [`Money::sum`] return an error message
//!   instead;
//! - [`Money::format`] places the decimal separator by the currency's ISO 4217 exponent
//!   ([`minor_digits`]) and follows the conventions of the platform's locales (pt-BR, en-US,
//!   es-ES);
//! - [`MAX_AMOUNT_MINOR`] is the one upper bound of every amount the platform accepts: a price, an
//!   order's total, a payment or a refund.

use std::hash::{Hash, Hasher};

use crate::domain::Currency;

/// The largest amount accepted anywhere (a price, an order's total, a payment, a refund):
/// 9 999 999 999 minor units, R$ 99.999.999,99. It is the most a boleto's ten-digit amount field
/// carries, so every amount that passes can be charged by every method; anything above is a typo.
pub const MAX_AMOUNT_MINOR: i64 = 9_999_999_999;

/// An amount of money: a signed count of minor units of one currency.
///
/// Equality compares both the amount and the currency: `R$ 1,00` is not `US$ 1,00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

// `Currency` does not implement `Hash`, so this hashes its code; consistent with the derived `Eq`.
impl Hash for Money {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.minor.hash(state);
        self.currency.as_str().hash(state);
    }
}

/// Currencies whose ISO 4217 exponent is 0: the minor unit is the major unit.
const ZERO_DIGITS: [&str; 16] = [
    "JPY", "KRW", "CLP", "PYG", "VND", "ISK", "UGX", "XAF", "XOF", "XPF", "KMF", "GNF", "RWF",
    "VUV", "DJF", "BIF",
];

/// Currencies whose ISO 4217 exponent is 3.
const THREE_DIGITS: [&str; 7] = ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];

/// Currency symbols; any other currency is written as its ISO code followed by a space.
/// USD's `$` is only used in en-US; elsewhere it is written `US$`.
const SYMBOLS: [(&str, &str); 5] = [
    ("BRL", "R$"),
    ("USD", "$"),
    ("EUR", "€"),
    ("GBP", "£"),
    ("JPY", "¥"),
];

/// How a locale writes an amount.
struct LocaleStyle {
    /// The thousands separator.
    group: char,
    /// The decimal separator.
    decimal: char,
    /// The symbol goes after the number (`12,34 €`) rather than before it (`R$ 12,34`).
    symbol_after: bool,
    /// A space always separates symbol and number (an ISO code always gets one).
    spaced: bool,
    /// How USD is written.
    usd: &'static str,
}

const PT_BR: LocaleStyle = LocaleStyle {
    group: '.',
    decimal: ',',
    symbol_after: false,
    spaced: true,
    usd: "US$",
};

const EN_US: LocaleStyle = LocaleStyle {
    group: ',',
    decimal: '.',
    symbol_after: false,
    spaced: false,
    usd: "$",
};

const ES_ES: LocaleStyle = LocaleStyle {
    group: '.',
    decimal: ',',
    symbol_after: true,
    spaced: true,
    usd: "US$",
};

/// The supported locales; anything else is formatted like en-US.
const LOCALE_STYLES: [(&str, &LocaleStyle); 3] =
    [("pt-BR", &PT_BR), ("en-US", &EN_US), ("es-ES", &ES_ES)];

fn locale_style(locale: &str) -> &'static LocaleStyle {
    let locale = locale.trim();
    LOCALE_STYLES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(locale))
        .map_or(&EN_US, |(_, style)| *style)
}

/// The number of minor-unit digits of a currency (its ISO 4217 exponent):
/// 0 for JPY and the like, 3 for BHD and the like, 2 for every other currency.
pub fn minor_digits(currency: Currency) -> u32 {
    let code = currency.as_str();
    if ZERO_DIGITS.contains(&code) {
        0
    } else if THREE_DIGITS.contains(&code) {
        3
    } else {
        2
    }
}

impl Money {
    /// An amount of `minor` minor units of `currency` (`Money::new(1234, BRL)` is R$ 12,34).
    pub fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }

    /// Nothing, in `currency`.
    pub fn zero(currency: Currency) -> Self {
        Self::new(0, currency)
    }

    /// The amount in minor units (cents for BRL).
    pub fn minor(&self) -> i64 {
        self.minor
    }

    /// The currency of the amount.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// `self + other`; an error if the currencies differ or the result does not fit.
    pub fn checked_add(self, other: Money) -> Result<Money, String> {
        self.same_currency(other, "add")?;
        self.minor
            .checked_add(other.minor)
            .map(|minor| Self::new(minor, self.currency))
            .ok_or_else(|| out_of_range(self.currency))
    }

    /// `self - other`; an error if the currencies differ or the result does not fit.
    pub fn checked_sub(self, other: Money) -> Result<Money, String> {
        self.same_currency(other, "subtract")?;
        self.minor
            .checked_sub(other.minor)
            .map(|minor| Self::new(minor, self.currency))
            .ok_or_else(|| out_of_range(self.currency))
    }

    /// `self × quantity` (e.g. a unit price times a line quantity); an error if it does not fit.
    pub fn checked_mul(self, quantity: i64) -> Result<Money, String> {
        self.minor
            .checked_mul(quantity)
            .map(|minor| Self::new(minor, self.currency))
            .ok_or_else(|| out_of_range(self.currency))
    }

    /// The total of `items`, all of which must be in `currency`; zero when there are none.
    pub fn sum(
        items: impl IntoIterator<Item = Money>,
        currency: Currency,
    ) -> Result<Money, String> {
        items
            .into_iter()
            .try_fold(Self::zero(currency), Money::checked_add)
    }

    /// The amount written for a locale, e.g. for 1234 minor units:
    /// `"pt-BR"` → `R$ 12,34` / `US$ 12,34`; `"en-US"` → `$12.34` / `R$12.34`;
    /// `"es-ES"` → `12,34 €`. Thousands are grouped (`R$ 1.234,56`, `$1,234.56`, `1.234,56 €`),
    /// negative amounts get a leading minus (`-R$ 12,34`), currencies without a symbol are
    /// written with their ISO code (`CHF 12.34`). An unknown locale is formatted like en-US.
    pub fn format(&self, locale: &str) -> String {
        let style = locale_style(locale);

        let code = self.currency.as_str();
        let (symbol, is_code) = match SYMBOLS.iter().find(|(known, _)| *known == code) {
            Some(("USD", _)) => (style.usd, false),
            Some((_, symbol)) => (*symbol, false),
            None => (code, true),
        };
        let number = self.number(style);
        let sign = if self.minor < 0 { "-" } else { "" };
        if style.symbol_after {
            format!("{sign}{number} {symbol}")
        } else {
            let space = if style.spaced || is_code { " " } else { "" };
            format!("{sign}{symbol}{space}{number}")
        }
    }

    /// The absolute amount with the locale's separators and the currency's decimal places.
    fn number(&self, style: &LocaleStyle) -> String {
        let digits = minor_digits(self.currency);
        let scale = 10u64.pow(digits);
        let amount = self.minor.unsigned_abs();
        let whole = (amount / scale).to_string();

        let mut number = String::with_capacity(whole.len() * 4 / 3 + 5);
        for (index, digit) in whole.chars().enumerate() {
            if index > 0 && (whole.len() - index).is_multiple_of(3) {
                number.push(style.group);
            }
            number.push(digit);
        }
        if digits > 0 {
            number.push(style.decimal);
            number.push_str(&format!(
                "{:0width$}",
                amount % scale,
                width = digits as usize
            ));
        }
        number
    }

    fn same_currency(self, other: Money, operation: &str) -> Result<(), String> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(format!(
                "cannot {operation} amounts in different currencies ({} and {})",
                self.currency, other.currency
            ))
        }
    }
}

fn out_of_range(currency: Currency) -> String {
    format!("the {currency} amount is out of range")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn currency(code: &str) -> Currency {
        Currency::parse(code).expect("iso code")
    }

    fn money(minor: i64, code: &str) -> Money {
        Money::new(minor, currency(code))
    }

    #[test]
    fn formats_per_locale() {
        let cases: &[(i64, &str, &str, &str)] = &[
            // pt-BR
            (1234, "BRL", "pt-BR", "R$ 12,34"),
            (123456, "BRL", "pt-BR", "R$ 1.234,56"),
            (0, "BRL", "pt-BR", "R$ 0,00"),
            (5, "BRL", "pt-BR", "R$ 0,05"),
            (-1234, "BRL", "pt-BR", "-R$ 12,34"),
            (-5, "BRL", "pt-BR", "-R$ 0,05"),
            (123456789012, "BRL", "pt-BR", "R$ 1.234.567.890,12"),
            (1234, "USD", "pt-BR", "US$ 12,34"),
            (1234, "EUR", "pt-BR", "€ 12,34"),
            (1234, "JPY", "pt-BR", "¥ 1.234"),
            (1234567, "BHD", "pt-BR", "BHD 1.234,567"),
            (1234, "CHF", "pt-BR", "CHF 12,34"),
            // en-US
            (1234, "USD", "en-US", "$12.34"),
            (1234, "BRL", "en-US", "R$12.34"),
            (123456, "USD", "en-US", "$1,234.56"),
            (100000, "USD", "en-US", "$1,000.00"),
            (0, "USD", "en-US", "$0.00"),
            (-1234, "USD", "en-US", "-$12.34"),
            (99, "GBP", "en-US", "£0.99"),
            (1234, "EUR", "en-US", "€12.34"),
            (1234, "JPY", "en-US", "¥1,234"),
            (0, "JPY", "en-US", "¥0"),
            (-1234567, "JPY", "en-US", "-¥1,234,567"),
            (1234567, "BHD", "en-US", "BHD 1,234.567"),
            (5, "BHD", "en-US", "BHD 0.005"),
            (1234, "CHF", "en-US", "CHF 12.34"),
            (i64::MAX, "USD", "en-US", "$92,233,720,368,547,758.07"),
            (i64::MIN, "USD", "en-US", "-$92,233,720,368,547,758.08"),
            // es-ES
            (1234, "EUR", "es-ES", "12,34 €"),
            (123456, "EUR", "es-ES", "1.234,56 €"),
            (0, "EUR", "es-ES", "0,00 €"),
            (-1234, "EUR", "es-ES", "-12,34 €"),
            (1234, "USD", "es-ES", "12,34 US$"),
            (1234, "BRL", "es-ES", "12,34 R$"),
            (1234, "JPY", "es-ES", "1.234 ¥"),
            (1234567, "BHD", "es-ES", "1.234,567 BHD"),
            (1234, "CHF", "es-ES", "12,34 CHF"),
            // locale names are matched case-insensitively; unknown ones fall back to en-US
            (123456, "BRL", "pt-br", "R$ 1.234,56"),
            (123456, "BRL", "fr-FR", "R$1,234.56"),
            (123456, "EUR", "", "€1,234.56"),
        ];
        for &(minor, code, locale, expected) in cases {
            assert_eq!(
                money(minor, code).format(locale),
                expected,
                "{minor} {code} in {locale:?}"
            );
        }
    }

    #[test]
    fn minor_digits_follow_iso_4217() {
        assert_eq!(minor_digits(Currency::BRL), 2);
        assert_eq!(minor_digits(currency("USD")), 2);
        assert_eq!(minor_digits(currency("CHF")), 2);
        for code in ZERO_DIGITS {
            assert_eq!(minor_digits(currency(code)), 0, "{code}");
        }
        for code in THREE_DIGITS {
            assert_eq!(minor_digits(currency(code)), 3, "{code}");
        }
    }

    #[test]
    fn accessors_and_zero() {
        let amount = money(-250, "EUR");
        assert_eq!(amount.minor(), -250);
        assert_eq!(amount.currency(), currency("EUR"));
        assert_eq!(Money::zero(Currency::BRL), money(0, "BRL"));
        assert_ne!(money(100, "BRL"), money(100, "USD"));
    }

    #[test]
    fn arithmetic() {
        let price = money(1250, "BRL");
        assert_eq!(price.checked_add(money(50, "BRL")), Ok(money(1300, "BRL")));
        assert_eq!(price.checked_sub(money(1300, "BRL")), Ok(money(-50, "BRL")));
        assert_eq!(price.checked_mul(3), Ok(money(3750, "BRL")));
        assert_eq!(price.checked_mul(-2), Ok(money(-2500, "BRL")));
        assert_eq!(price.checked_mul(0), Ok(money(0, "BRL")));
    }

    #[test]
    fn overflow_is_an_error() {
        let max = money(i64::MAX, "BRL");
        let min = money(i64::MIN, "BRL");
        let one = money(1, "BRL");
        assert!(max.checked_add(one).is_err());
        assert!(min.checked_sub(one).is_err());
        assert!(max.checked_mul(2).is_err());
        assert!(min.checked_mul(-1).is_err());
        let error = max.checked_add(one).expect_err("overflow");
        assert!(error.contains("out of range"), "{error}");
    }

    #[test]
    fn currency_mismatch_is_an_error() {
        let reais = money(100, "BRL");
        let dollars = money(100, "USD");
        let error = reais.checked_add(dollars).expect_err("mismatch");
        assert!(error.contains("BRL") && error.contains("USD"), "{error}");
        assert!(reais.checked_sub(dollars).is_err());
    }

    #[test]
    fn sums() {
        assert_eq!(
            Money::sum(Vec::new(), Currency::BRL),
            Ok(Money::zero(Currency::BRL))
        );
        assert_eq!(
            Money::sum(
                [money(100, "BRL"), money(250, "BRL"), money(-50, "BRL")],
                Currency::BRL
            ),
            Ok(money(300, "BRL"))
        );
        // every item must be in the requested currency, even the first one
        assert!(Money::sum([money(100, "USD")], Currency::BRL).is_err());
        assert!(Money::sum([money(100, "BRL"), money(1, "USD")], Currency::BRL).is_err());
        assert!(Money::sum([money(i64::MAX, "BRL"), money(1, "BRL")], Currency::BRL).is_err());
    }

    #[test]
    fn equal_amounts_hash_alike() {
        use std::collections::HashSet;
        let set: HashSet<Money> = [money(100, "BRL"), money(100, "BRL"), money(100, "USD")]
            .into_iter()
            .collect();
        assert_eq!(set.len(), 2);
    }
}
