//! `Phone`: an international phone number in E.164 form.
//!
//! What the type guarantees: the stored text is `+` followed by 8 to 15 ASCII digits, the first
//! of which (the start of the country code) is not 0 — e.g. `+5511987654321`. Input may use
//! spaces, dashes, dots and parentheses as separators and may write the international prefix
//! as `00` instead of `+`; both are normalised away. Whether the number exists, or its country
//! code is assigned, is not checked.

use std::fmt;

/// A phone number in E.164 form: `+` then 8 to 15 digits, not starting with 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Phone(String);

/// The fewest and most digits after the `+`.
const MIN_DIGITS: usize = 8;
const MAX_DIGITS: usize = 15;

impl Phone {
    /// Parses `+55 (11) 98765-4321` or `0055 11 98765.4321` into `+5511987654321`.
    ///
    /// Refused: a missing `+`/`00` prefix, any character other than digits and the separators
    /// (space, `-`, `.`, `(`, `)`), fewer than 8 or more than 15 digits, a country code
    /// starting with 0.
    pub fn parse(input: &str) -> Result<Self, String> {
        let trimmed = input.trim();
        let rest = trimmed
            .strip_prefix('+')
            .or_else(|| trimmed.strip_prefix("00"))
            .ok_or_else(|| {
                format!(
                    "`{trimmed}` is not an international phone number: start with + and the country code"
                )
            })?;

        let mut e164 = String::with_capacity(MAX_DIGITS + 1);
        e164.push('+');
        for c in rest.chars() {
            match c {
                '0'..='9' => e164.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => {
                    return Err(format!(
                        "`{trimmed}` is not a valid phone number: `{c}` is not allowed; use digits, spaces, -, . and ()"
                    ));
                }
            }
        }

        let digits = &e164[1..];
        if !(MIN_DIGITS..=MAX_DIGITS).contains(&digits.len()) {
            return Err(format!(
                "`{trimmed}` is not a valid phone number: it has {} digits, expected {MIN_DIGITS} to {MAX_DIGITS} including the country code",
                digits.len()
            ));
        }
        if digits.starts_with('0') {
            return Err(format!(
                "`{trimmed}` is not a valid phone number: the country code cannot start with 0"
            ));
        }
        Ok(Self(e164))
    }

    /// The number in E.164 form, e.g. `+5511987654321`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Phone;

    #[test]
    fn normalises_to_e164() {
        for (input, expected) in [
            ("+55 (11) 98765-4321", "+5511987654321"),
            ("0044 20 7946 0958", "+442079460958"),
            ("+1.415.555.2671", "+14155552671"),
            ("  +5511987654321  ", "+5511987654321"),
            ("+ 55 11 9876-5432", "+551198765432"),
            ("+12345678", "+12345678"),
            ("+123456789012345", "+123456789012345"),
        ] {
            let phone = Phone::parse(input).expect(input);
            assert_eq!(phone.as_str(), expected, "{input:?}");
            assert_eq!(phone.to_string(), expected, "{input:?}");
        }
    }

    #[test]
    fn refuses_what_is_not_e164() {
        for bad in [
            "",
            "+",
            "00",
            "11 98765-4321",
            "5511987654321",
            "0 44 20 7946 0958",
            "+55 11 9876S-4321",
            "+55 11 98765/4321",
            "+55 11 98765-4321 ext 2",
            "+55+11987654321",
            "+1234567",
            "+1234567890123456",
            "+0 55 11 98765-4321",
            "+055119876543",
            "000 44 20 7946 0958",
            "+٥٥١١٩٨٧٦٥٤٣٢١",
        ] {
            assert!(Phone::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let short = Phone::parse("+1234567").expect_err("too short");
        assert!(short.contains("7 digits"), "{short}");
        let letters = Phone::parse("+55 11 9876S-4321").expect_err("letter");
        assert!(letters.contains("`S`"), "{letters}");
        let prefix = Phone::parse("11 98765-4321").expect_err("no prefix");
        assert!(prefix.contains("start with +"), "{prefix}");
    }
}
