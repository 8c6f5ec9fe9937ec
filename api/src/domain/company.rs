//! What describes a company: its slug, business type, locale, timezone and currency.

use std::{fmt, str::FromStr};

/// The kind of business; decides the built-in roles and workflow templates a company gets.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusinessType {
    Restaurant,
    BikeShop,
    Clinic,
    PetStore,
    Generic,
}

impl BusinessType {
    pub const ALL: [Self; 5] = [
        Self::Restaurant,
        Self::BikeShop,
        Self::Clinic,
        Self::PetStore,
        Self::Generic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Restaurant => "RESTAURANT",
            Self::BikeShop => "BIKE_SHOP",
            Self::Clinic => "CLINIC",
            Self::PetStore => "PET_STORE",
            Self::Generic => "GENERIC",
        }
    }
}

impl FromStr for BusinessType {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == value)
            .ok_or_else(|| format!("unknown business type `{value}`"))
    }
}

/// Whether a company may act. A suspended company's tokens and keys stop working at once.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompanyStatus {
    Active,
    Suspended,
}

impl CompanyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Suspended => "SUSPENDED",
        }
    }
}

/// A company's URL-safe handle: 3–64 lower-case letters, digits and single hyphens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slug(String);

impl Slug {
    pub fn parse(input: &str) -> Result<Self, String> {
        let slug = input.trim().to_lowercase();
        let valid = (3..=64).contains(&slug.len())
            && slug
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !slug.starts_with('-')
            && !slug.ends_with('-')
            && !slug.contains("--");
        if valid {
            Ok(Self(slug))
        } else {
            Err(format!(
                "`{}` is not a valid slug: use 3 to 64 lower-case letters, digits and single hyphens",
                input.trim()
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The languages the platform speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locale(&'static str);

impl Locale {
    pub const SUPPORTED: [&'static str; 3] = ["pt-BR", "en-US", "es-ES"];
    pub const DEFAULT: Self = Self("pt-BR");

    pub fn parse(input: &str) -> Result<Self, String> {
        Self::SUPPORTED
            .iter()
            .find(|supported| supported.eq_ignore_ascii_case(input.trim()))
            .map(|supported| Self(supported))
            .ok_or_else(|| {
                format!(
                    "unsupported locale `{input}`; one of: {}",
                    Self::SUPPORTED.join(", ")
                )
            })
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

/// An IANA time zone name, e.g. `America/Sao_Paulo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timezone(String);

impl Timezone {
    pub const DEFAULT: &'static str = "America/Sao_Paulo";

    pub fn parse(input: &str) -> Result<Self, String> {
        input
            .trim()
            .parse::<chrono_tz::Tz>()
            .map(|zone| Self(zone.name().to_string()))
            .map_err(|_| format!("`{input}` is not an IANA time zone (e.g. America/Sao_Paulo)"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An active ISO 4217 currency code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency([u8; 3]);

/// Active ISO 4217 codes (fund and precious-metal codes left out).
const ISO_4217: &str = "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL \
    BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD \
    FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS \
    KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK \
    MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD \
    SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX \
    USD UYU UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG";

impl Currency {
    pub const BRL: Self = Self(*b"BRL");

    pub fn parse(input: &str) -> Result<Self, String> {
        let code = input.trim().to_ascii_uppercase();
        match code.as_bytes() {
            [a, b, c] if ISO_4217.split_whitespace().any(|known| known == code) => {
                Ok(Self([*a, *b, *c]))
            }
            _ => Err(format!("`{input}` is not an ISO 4217 currency code")),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII letters from the list above are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(
            Slug::parse(" Pizza-Roma ").expect("valid").as_str(),
            "pizza-roma"
        );
        for bad in [
            "ab",
            "-pizza",
            "pizza-",
            "pi--zza",
            "pizza roma",
            "pizzá",
            &"a".repeat(65),
        ] {
            assert!(Slug::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn business_types_round_trip() {
        for name in ["RESTAURANT", "BIKE_SHOP", "CLINIC", "PET_STORE", "GENERIC"] {
            assert_eq!(name.parse::<BusinessType>().expect("known").as_str(), name);
        }
        assert!("BAKERY".parse::<BusinessType>().is_err());
    }

    #[test]
    fn locales_timezones_and_currencies() {
        assert_eq!(Locale::parse("en-us").expect("supported").as_str(), "en-US");
        assert!(Locale::parse("fr-FR").is_err());
        assert_eq!(
            Timezone::parse("America/Sao_Paulo").expect("iana").as_str(),
            "America/Sao_Paulo"
        );
        assert!(Timezone::parse("Mars/Olympus").is_err());
        assert_eq!(Currency::parse("brl").expect("iso").as_str(), "BRL");
        assert!(Currency::parse("BRX").is_err());
        assert!(Currency::parse("BR").is_err());
    }
}
