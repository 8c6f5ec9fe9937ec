//! `Barcode` and `DigitableLine`: a FEBRABAN bank boleto (bloqueto de cobrança).
//!
//! What the types guarantee: a [`Barcode`] is 44 ASCII digits — bank (3), currency `9` (real),
//! general check digit (modulo 11), due-date factor (4), amount in centavos (10), bank free
//! field (25) — whose general check digit is right and whose factor is `0000` (no due date) or
//! 1000 to 9999. A [`DigitableLine`] is the same content as the 47 digits a payer types, and
//! its three field check digits (modulo 10) are right as well. Converting one into the other
//! cannot fail. Input may contain spaces and dots, as printed on the slip.
//!
//! Only bank boletos are covered: utility and tax payments (arrecadação, 48 digits starting
//! with 8) follow another layout. Whether the bank exists, or the free field follows that
//! bank's own layout, is not checked.
//!
//! The due-date factor counts days and wraps: it reached 9999 on 2025-02-21 and restarted at
//! 1000 on 2025-02-22, so each factor names two dates 9000 days apart. [`due_date_factor`]
//! encodes dates of either cycle (2000-07-03 to 2049-10-13); [`Barcode::due_date`] always
//! reads the current cycle.

use std::fmt;

use chrono::{Days, NaiveDate};

/// A validated 44-digit boleto barcode.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Barcode(String);

/// A validated 47-digit linha digitável, stored as digits only.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DigitableLine(String);

/// What to put in a new boleto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoletoSpec<'a> {
    /// The issuing bank's 3-digit COMPE number, e.g. `001`.
    pub bank_code: &'a str,
    pub due_date: NaiveDate,
    /// Centavos; 0 leaves the amount for the payer to fill in.
    pub amount_minor: i64,
    /// 25 digits laid out as the issuing bank requires; [`free_field`] builds a generic one.
    pub free_field: &'a str,
}

const BARCODE_DIGITS: usize = 44;
const LINE_DIGITS: usize = 47;
const FREE_FIELD_DIGITS: usize = 25;
/// The amount field holds 10 digits of centavos.
const MAX_AMOUNT_MINOR: i64 = 9_999_999_999;
/// The currency code of the real.
const REAL: u8 = b'9';
/// Factors below 1000 belong to 1997–2000 and are not issued any more.
const MIN_FACTOR: u32 = 1000;
const MAX_FACTOR: u32 = 9999;
/// Day 0 of the first factor cycle (factor 1000 fell on 2000-07-03).
const FIRST_CYCLE_BASE: NaiveDate = date(1997, 10, 7);
/// Factor 1000 of the current cycle, the day after the first cycle reached 9999.
const CURRENT_CYCLE_START: NaiveDate = date(2025, 2, 22);

const fn date(year: i32, month: u32, day: u32) -> NaiveDate {
    match NaiveDate::from_ymd_opt(year, month, day) {
        Some(date) => date,
        None => panic!("invalid constant date"),
    }
}

impl Barcode {
    /// Parses the 44 digits read from the bars, spaces and dots allowed.
    ///
    /// Refused: other characters; a digit count other than 44; a currency code other than 9;
    /// a due-date factor from 0001 to 0999; a wrong general check digit (position 5).
    pub fn parse(input: &str) -> Result<Self, String> {
        let shown = input.trim();
        let digits = only_digits(shown, "a boleto barcode")?;
        if digits.len() != BARCODE_DIGITS {
            let hint = match digits.len() {
                LINE_DIGITS => "; 47 digits are a linha digitável",
                48 => "; 48 digits are a utility or tax payment, not a bank boleto",
                _ => "",
            };
            return Err(format!(
                "`{shown}` is not a boleto barcode: it has {} digits, expected {BARCODE_DIGITS}{hint}",
                digits.len()
            ));
        }
        check_barcode(&digits, "position 5")
            .map_err(|why| format!("`{shown}` is not a valid boleto barcode: {why}"))?;
        Ok(Self(digits))
    }

    /// The 44 digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The issuing bank's 3-digit COMPE number.
    pub fn bank_code(&self) -> &str {
        &self.0[..3]
    }

    /// The amount in centavos; 0 when the payer fills it in.
    pub fn amount_minor(&self) -> i64 {
        self.0[9..19]
            .bytes()
            .fold(0, |amount, b| amount * 10 + i64::from(b - b'0'))
    }

    /// The due date, `None` for factor `0000` (no due date).
    ///
    /// A factor is read in the cycle that started on 2025-02-22, so it gives a date from then
    /// to 2049-10-13. A boleto issued for a date before 2025-02-22 reads as due 9000 days
    /// later than printed; such a boleto is long past due, and a caller that still handles
    /// one must know its date from elsewhere.
    pub fn due_date(&self) -> Option<NaiveDate> {
        let days = self.factor().checked_sub(MIN_FACTOR)?;
        CURRENT_CYCLE_START.checked_add_days(Days::new(u64::from(days)))
    }

    fn factor(&self) -> u32 {
        self.0[5..9]
            .bytes()
            .fold(0, |factor, b| factor * 10 + u32::from(b - b'0'))
    }

    /// The linha digitável of the same boleto.
    pub fn to_line(&self) -> DigitableLine {
        let code = self.0.as_str();
        let free = &code[19..];
        let mut line = String::with_capacity(LINE_DIGITS);
        for field in [
            format!("{}{}", &code[..4], &free[..5]),
            free[5..15].to_string(),
            free[15..].to_string(),
        ] {
            line.push_str(&field);
            line.push(char::from(mod10(&field)));
        }
        line.push_str(&code[4..19]);
        DigitableLine(line)
    }
}

impl fmt::Display for Barcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl DigitableLine {
    /// Parses the 47 digits a payer types, as printed (`10492.00650 61000.100042 …`) or not.
    ///
    /// Refused: characters other than digits, spaces and dots; a digit count other than 47; a
    /// wrong check digit in field 1, 2 or 3; then whatever [`Barcode::parse`] refuses, the
    /// general check digit being field 4.
    pub fn parse(input: &str) -> Result<Self, String> {
        let shown = input.trim();
        let digits = only_digits(shown, "a linha digitável")?;
        if digits.len() != LINE_DIGITS {
            let hint = match digits.len() {
                BARCODE_DIGITS => "; 44 digits are a barcode",
                48 => "; 48 digits are a utility or tax payment, not a bank boleto",
                _ => "",
            };
            return Err(format!(
                "`{shown}` is not a linha digitável: it has {} digits, expected {LINE_DIGITS}{hint}",
                digits.len()
            ));
        }
        for (number, start, check) in [(1, 0, 9), (2, 10, 20), (3, 21, 31)] {
            let expected = mod10(&digits[start..check]);
            let found = digits.as_bytes()[check];
            if found != expected {
                return Err(format!(
                    "`{shown}` is not a valid linha digitável: field {number} (digits {}–{}) ends in check digit {} but its digits give {}; a digit was mistyped",
                    start + 1,
                    check + 1,
                    char::from(found),
                    char::from(expected)
                ));
            }
        }
        check_barcode(&line_to_barcode(&digits), "field 4")
            .map_err(|why| format!("`{shown}` is not a valid linha digitável: {why}"))?;
        Ok(Self(digits))
    }

    /// The 47 digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The usual printed form, `10492.00650 61000.100042 00997.263900 9 89810000021403`.
    pub fn formatted(&self) -> String {
        let line = self.0.as_str();
        format!(
            "{}.{} {}.{} {}.{} {} {}",
            &line[..5],
            &line[5..10],
            &line[10..15],
            &line[15..21],
            &line[21..26],
            &line[26..32],
            &line[32..33],
            &line[33..]
        )
    }

    /// The barcode of the same boleto.
    pub fn to_barcode(&self) -> Barcode {
        Barcode(line_to_barcode(&self.0))
    }
}

impl fmt::Display for DigitableLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Builds the barcode of a new boleto.
///
/// Refused: a bank code that is not 3 digits, a negative amount or one above
/// R$ 99.999.999,99, a free field that is not 25 digits, a due date no factor can express.
pub fn build(spec: &BoletoSpec) -> Result<Barcode, String> {
    let bank = spec.bank_code.trim();
    if bank.len() != 3 || !bank.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{bank}` is not a bank code: use the bank's 3-digit COMPE number, e.g. 001"
        ));
    }
    if !(0..=MAX_AMOUNT_MINOR).contains(&spec.amount_minor) {
        return Err(format!(
            "a boleto amount must be from 0 to 9999999999 centavos (R$ 99.999.999,99), got {}",
            spec.amount_minor
        ));
    }
    let free = spec.free_field.trim();
    if free.len() != FREE_FIELD_DIGITS || !free.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{free}` is not a boleto free field: it must be exactly {FREE_FIELD_DIGITS} digits"
        ));
    }
    let factor = due_date_factor(spec.due_date)?;
    // `0` holds the place of the general check digit, which skips it anyway.
    let mut code = format!(
        "{bank}{}0{factor:04}{:010}{free}",
        char::from(REAL),
        spec.amount_minor
    );
    let check = char::from(general_check_digit(code.as_bytes()));
    code.replace_range(4..5, check.encode_utf8(&mut [0; 4]));
    Ok(Barcode(code))
}

/// The due-date factor of `date`: days since 1997-10-07 up to 2025-02-21 (factor 9999), then
/// 1000 plus days since 2025-02-22.
///
/// Refused: dates before 2000-07-03 (factor 1000 of the first cycle) and after 2049-10-13
/// (factor 9999 of the current one).
pub fn due_date_factor(date: NaiveDate) -> Result<u32, String> {
    let factor = if date >= CURRENT_CYCLE_START {
        (date - CURRENT_CYCLE_START).num_days() + i64::from(MIN_FACTOR)
    } else {
        (date - FIRST_CYCLE_BASE).num_days()
    };
    match u32::try_from(factor) {
        Ok(factor) if (MIN_FACTOR..=MAX_FACTOR).contains(&factor) => Ok(factor),
        _ if date < CURRENT_CYCLE_START => Err(format!(
            "a boleto cannot be due on {date}: the earliest due date a barcode can express is 2000-07-03"
        )),
        _ => Err(format!(
            "a boleto cannot be due on {date}: the latest due date a barcode can express is 2049-10-13"
        )),
    }
}

/// A generic 25-digit free field: agency (4) + wallet (2) + our number (11) + account (8),
/// each left-padded with zeros.
///
/// Banks each define their own free-field layout (Bradesco's, for one, is close to this but
/// ends in a 7-digit account and a 0), so a boleto meant for a bank's registration system
/// needs that bank's layout; this one only keeps the four identifiers apart and readable.
/// Refused: an empty part, a non-digit (write an account's check digit as a plain digit),
/// a part longer than its slot.
pub fn free_field(
    agency: &str,
    account: &str,
    wallet: &str,
    our_number: &str,
) -> Result<String, String> {
    let mut field = String::with_capacity(FREE_FIELD_DIGITS);
    for (label, value, width) in [
        ("agency", agency, 4),
        ("wallet", wallet, 2),
        ("our number", our_number, 11),
        ("account", account, 8),
    ] {
        let value = value.trim();
        if value.is_empty() {
            return Err(format!("the boleto {label} is empty"));
        }
        if let Some(c) = value.chars().find(|c| !c.is_ascii_digit()) {
            return Err(format!(
                "the boleto {label} `{value}` is not valid: `{c}` is not a digit; use digits only"
            ));
        }
        if value.len() > width {
            return Err(format!(
                "the boleto {label} `{value}` has {} digits; the free field has room for {width}",
                value.len()
            ));
        }
        field.push_str(&format!("{value:0>width$}"));
    }
    Ok(field)
}

/// The digits of `shown` without its spaces and dots, or why it has other characters.
fn only_digits(shown: &str, what: &str) -> Result<String, String> {
    let mut digits = String::with_capacity(LINE_DIGITS);
    for c in shown.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '.' => {}
            _ => {
                return Err(format!(
                    "`{shown}` is not {what}: `{c}` is not allowed; use digits, spaces and dots"
                ));
            }
        }
    }
    Ok(digits)
}

/// Why 44 digits are not a valid barcode; `check_place` names where the general check digit
/// was written, which differs between barcode and line.
fn check_barcode(code: &str, check_place: &str) -> Result<(), String> {
    let bytes = code.as_bytes();
    if bytes[3] != REAL {
        return Err(format!(
            "the currency code (digit 4) is {}, expected 9 (real)",
            char::from(bytes[3])
        ));
    }
    let factor = &code[5..9];
    if factor != "0000" && factor < "1000" {
        return Err(format!(
            "the due-date factor {factor} is not in use: it is 0000 (no due date) or 1000 to 9999"
        ));
    }
    let expected = general_check_digit(bytes);
    if bytes[4] != expected {
        return Err(format!(
            "the general check digit ({check_place}) is {} but the other digits give {}; a digit was mistyped",
            char::from(bytes[4]),
            char::from(expected)
        ));
    }
    Ok(())
}

/// The barcode held in a 47-digit line: fields 1–3 without their check digits are bank,
/// currency and free field; field 4 is the general check digit; field 5 factor and amount.
fn line_to_barcode(line: &str) -> String {
    [
        &line[..4],
        &line[32..],
        &line[4..9],
        &line[10..20],
        &line[21..31],
    ]
    .concat()
}

/// The modulo-11 general check digit of a 44-digit barcode, as an ASCII digit: weights 2 to 9
/// repeating from the right over every digit but the fifth, 11 minus the remainder, with 10
/// and 11 (remainders 1 and 0) written as 1.
fn general_check_digit(code: &[u8]) -> u8 {
    let sum: u32 = code
        .iter()
        .enumerate()
        .filter(|&(index, _)| index != 4)
        .rev()
        .zip((2..=9).cycle())
        .map(|((_, b), weight)| u32::from(b - b'0') * weight)
        .sum();
    match 11 - sum % 11 {
        10 | 11 => b'1',
        digit => b'0' + digit as u8,
    }
}

/// The modulo-10 check digit of a line field, as an ASCII digit: weights 2, 1, 2, … from the
/// right, the digits of each product summed, then what brings the sum to a multiple of 10.
fn mod10(field: &str) -> u8 {
    let sum: u32 = field
        .bytes()
        .rev()
        .zip([2, 1].into_iter().cycle())
        .map(|(b, weight)| {
            let product = u32::from(b - b'0') * weight;
            product / 10 + product % 10
        })
        .sum();
    b'0' + ((10 - sum % 10) % 10) as u8
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::{
        Barcode, BoletoSpec, DigitableLine, build, due_date_factor, free_field, general_check_digit,
    };

    /// A Caixa boleto of R$ 214,03 due 2022-05-10, published with both forms.
    const BARCODE: &str = "10499898100000214032006561000100040099726390";
    const LINE: &str = "10492006506100010004200997263900989810000021403";

    fn day(year: i32, month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(year, month, day).expect("test date")
    }

    /// `code` with the digit at `index` replaced by `digit`.
    fn with_digit(code: &str, index: usize, digit: u8) -> String {
        let mut bytes = code.as_bytes().to_vec();
        bytes[index] = digit;
        String::from_utf8(bytes).expect("ASCII")
    }

    #[test]
    fn published_barcode_gives_published_line() {
        let barcode = Barcode::parse(BARCODE).expect("published barcode");
        assert_eq!(barcode.as_str(), BARCODE);
        assert_eq!(barcode.to_string(), BARCODE);
        let line = barcode.to_line();
        assert_eq!(line.as_str(), LINE);
        assert_eq!(line.to_string(), LINE);
    }

    #[test]
    fn published_line_gives_published_barcode() {
        for input in [
            LINE,
            "10492.00650 61000.100042 00997.263900 9 89810000021403",
            "  10492.00650  61000.100042  00997.263900  9  89810000021403 ",
        ] {
            let line = DigitableLine::parse(input).expect(input);
            assert_eq!(line.as_str(), LINE, "{input:?}");
            assert_eq!(line.to_barcode().as_str(), BARCODE, "{input:?}");
        }
        assert_eq!(
            DigitableLine::parse(LINE).expect("line").formatted(),
            "10492.00650 61000.100042 00997.263900 9 89810000021403"
        );
    }

    #[test]
    fn reads_the_published_fields() {
        let barcode = Barcode::parse(BARCODE).expect("published barcode");
        assert_eq!(barcode.bank_code(), "104");
        assert_eq!(barcode.amount_minor(), 21_403);
        // Printed due date 2022-05-10 is factor 8981 of the first cycle; read in the current
        // cycle, the same factor is 9000 days later.
        assert_eq!(due_date_factor(day(2022, 5, 10)), Ok(8981));
        assert_eq!(barcode.due_date(), Some(day(2046, 12, 30)));
        assert_eq!(due_date_factor(day(2046, 12, 30)), Ok(8981));
    }

    #[test]
    fn refuses_a_corrupted_barcode() {
        let tampered = with_digit(BARCODE, 30, b'9');
        assert_ne!(tampered, BARCODE);
        let error = Barcode::parse(&tampered).expect_err("changed free field digit");
        assert!(
            error.contains("general check digit (position 5)"),
            "{error}"
        );
        assert!(
            error.contains("is 9 but the other digits give 1"),
            "{error}"
        );

        for digit in b'0'..=b'9' {
            if digit != b'9' {
                let error = Barcode::parse(&with_digit(BARCODE, 4, digit)).expect_err("check");
                assert!(error.contains("general check digit"), "{error}");
            }
        }
        let error = Barcode::parse(&with_digit(BARCODE, 3, b'0')).expect_err("currency");
        assert!(error.contains("currency code"), "{error}");
    }

    #[test]
    fn refuses_a_corrupted_line_naming_the_field() {
        // Modulo 10 catches every single changed digit of its field.
        for (field, start, end) in [(1, 0, 10), (2, 10, 21), (3, 21, 32)] {
            for index in start..end {
                for digit in b'0'..=b'9' {
                    if digit == LINE.as_bytes()[index] {
                        continue;
                    }
                    let error = DigitableLine::parse(&with_digit(LINE, index, digit))
                        .expect_err("corrupted field");
                    assert!(
                        error.contains(&format!("field {field} ")),
                        "digit {index}: {error}"
                    );
                }
            }
        }
        let error = DigitableLine::parse(&with_digit(LINE, 32, b'4')).expect_err("field 4");
        assert!(error.contains("general check digit (field 4)"), "{error}");
        let error = DigitableLine::parse(&with_digit(LINE, 40, b'7')).expect_err("amount");
        assert!(error.contains("general check digit (field 4)"), "{error}");
    }

    #[test]
    fn refuses_wrong_lengths_and_characters() {
        for bad in [
            "",
            &BARCODE[1..],
            &format!("{BARCODE}0"),
            &BARCODE.replace('9', "x"),
            &format!("{}-{}", &BARCODE[..20], &BARCODE[20..]),
        ] {
            assert!(Barcode::parse(bad).is_err(), "{bad:?} accepted as barcode");
        }
        for bad in ["", &LINE[1..], &format!("{LINE}0"), &LINE.replace('9', "٩")] {
            assert!(
                DigitableLine::parse(bad).is_err(),
                "{bad:?} accepted as line"
            );
        }
        let error = Barcode::parse(LINE).expect_err("line as barcode");
        assert!(error.contains("47 digits, expected 44"), "{error}");
        assert!(error.contains("linha digitável"), "{error}");
        let error = DigitableLine::parse(BARCODE).expect_err("barcode as line");
        assert!(error.contains("44 digits, expected 47"), "{error}");
        let error = Barcode::parse(&format!("8{}", &LINE)).expect_err("48 digits");
        assert!(error.contains("utility or tax"), "{error}");
        let error =
            Barcode::parse("1049989810000021403/2006561000100040099726390").expect_err("slash");
        assert!(error.contains("`/`"), "{error}");
    }

    #[test]
    fn factor_zero_means_no_due_date_and_low_factors_are_refused() {
        let mut no_due_date = format!("{}00000{}", &BARCODE[..4], &BARCODE[9..]);
        let check = general_check_digit(no_due_date.as_bytes());
        no_due_date = with_digit(&no_due_date, 4, check);
        let barcode = Barcode::parse(&no_due_date).expect("factor 0000");
        assert_eq!(barcode.due_date(), None);
        assert_eq!(barcode.amount_minor(), 21_403);

        let mut low = with_digit(&no_due_date, 8, b'1');
        let check = general_check_digit(low.as_bytes());
        low = with_digit(&low, 4, check);
        let error = Barcode::parse(&low).expect_err("factor 0001");
        assert!(error.contains("factor 0001"), "{error}");
    }

    #[test]
    fn due_date_factor_across_the_reset() {
        assert_eq!(due_date_factor(day(2000, 7, 3)), Ok(1000));
        assert_eq!(due_date_factor(day(2025, 2, 21)), Ok(9999));
        assert_eq!(due_date_factor(day(2025, 2, 22)), Ok(1000));
        assert_eq!(due_date_factor(day(2025, 2, 23)), Ok(1001));
        assert_eq!(due_date_factor(day(2049, 10, 13)), Ok(9999));
        let error = due_date_factor(day(2000, 7, 2)).expect_err("before the first cycle");
        assert!(error.contains("earliest"), "{error}");
        let error = due_date_factor(day(2049, 10, 14)).expect_err("after the current cycle");
        assert!(error.contains("latest"), "{error}");
    }

    #[test]
    fn builds_parses_and_converts_back() {
        let free = free_field("1234", "567890", "17", "12345678901").expect("free field");
        let due = day(2026, 3, 10);
        let barcode = build(&BoletoSpec {
            bank_code: "001",
            due_date: due,
            amount_minor: 123_456,
            free_field: &free,
        })
        .expect("build");
        assert_eq!(barcode.as_str().len(), 44);
        assert_eq!(&barcode.as_str()[5..19], "13810000123456");
        assert_eq!(Barcode::parse(barcode.as_str()), Ok(barcode.clone()));

        let line = barcode.to_line();
        let parsed = DigitableLine::parse(&line.formatted()).expect("line");
        assert_eq!(parsed, line);
        let back = parsed.to_barcode();
        assert_eq!(back, barcode);
        assert_eq!(back.bank_code(), "001");
        assert_eq!(back.amount_minor(), 123_456);
        assert_eq!(back.due_date(), Some(due));
        assert_eq!(&back.as_str()[19..], free);
    }

    #[test]
    fn build_refuses_a_bad_spec() {
        let free = "0".repeat(25);
        let spec = BoletoSpec {
            bank_code: "104",
            due_date: day(2026, 1, 5),
            amount_minor: 100,
            free_field: &free,
        };
        assert!(build(&spec).is_ok());
        for (bad, named) in [
            (
                BoletoSpec {
                    bank_code: "14",
                    ..spec
                },
                "bank code",
            ),
            (
                BoletoSpec {
                    bank_code: "1a4",
                    ..spec
                },
                "bank code",
            ),
            (
                BoletoSpec {
                    amount_minor: -1,
                    ..spec
                },
                "amount",
            ),
            (
                BoletoSpec {
                    amount_minor: 10_000_000_000,
                    ..spec
                },
                "amount",
            ),
            (
                BoletoSpec {
                    free_field: &free[1..],
                    ..spec
                },
                "free field",
            ),
            (
                BoletoSpec {
                    due_date: day(1999, 1, 1),
                    ..spec
                },
                "earliest",
            ),
        ] {
            let error = build(&bad).expect_err(named);
            assert!(error.contains(named), "{bad:?}: {error}");
        }
        let most = build(&BoletoSpec {
            amount_minor: 9_999_999_999,
            ..spec
        })
        .expect("largest amount");
        assert_eq!(most.amount_minor(), 9_999_999_999);
    }

    #[test]
    fn free_field_pads_each_part_into_its_slot() {
        assert_eq!(
            free_field("1234", "567890", "17", "12345678901").as_deref(),
            Ok("1234171234567890100567890")
        );
        assert_eq!(
            free_field(" 12 ", "9", "1", "42").as_deref(),
            Ok("0012010000000004200000009")
        );
        for (agency, account, wallet, our_number, named) in [
            ("12345", "1", "1", "1", "agency `12345` has 5 digits"),
            (
                "1",
                "123456789",
                "1",
                "1",
                "account `123456789` has 9 digits",
            ),
            ("1", "1", "123", "1", "wallet `123` has 3 digits"),
            (
                "1",
                "1",
                "1",
                "123456789012",
                "our number `123456789012` has 12",
            ),
            ("1", "12345-6", "1", "1", "`-` is not a digit"),
            ("", "1", "1", "1", "agency is empty"),
        ] {
            let error = free_field(agency, account, wallet, our_number).expect_err(named);
            assert!(error.contains(named), "{error}");
        }
    }
}
