//! `TaxDocument`: a Brazilian taxpayer number, CPF (people) or CNPJ (companies).
//!
//! What [`TaxDocument::parse`] guarantees: the stored value is digits only — 11 for a CPF,
//! 14 for a CNPJ — whose two trailing check digits are correct (modulo 11), and which is not
//! one digit repeated (`111.111.111-11` passes the check-digit test but is not a real number).
//! Input may be formatted with `.`, `-`, `/` and spaces. Whether the number is registered with
//! the Receita Federal is not checked.
//!
//! Only the numeric CNPJ is accepted; the alphanumeric CNPJ (letters in the first 12
//! positions) is refused.

/// A Brazilian CPF or CNPJ, stored as its digits only.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TaxDocument {
    /// A person's CPF: 11 digits.
    Cpf(String),
    /// A company's CNPJ: 14 digits.
    Cnpj(String),
}

/// Weights of the first and second CPF check digits (over the first 9 and 10 digits).
const CPF_WEIGHTS: [u32; 10] = [11, 10, 9, 8, 7, 6, 5, 4, 3, 2];
/// Weights of the first and second CNPJ check digits (over the first 12 and 13 digits).
const CNPJ_WEIGHTS: [u32; 13] = [6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2];

impl TaxDocument {
    /// Parses a CPF (`529.982.247-25`) or a CNPJ (`11.222.333/0001-81`), formatted or not.
    ///
    /// Refused: characters other than digits and `.`, `-`, `/`, spaces; a digit count other
    /// than 11 or 14; wrong check digits; one digit repeated throughout.
    pub fn parse(input: &str) -> Result<Self, String> {
        let shown = input.trim();
        let mut digits = String::with_capacity(14);
        for c in shown.chars() {
            match c {
                '0'..='9' => digits.push(c),
                '.' | '-' | '/' | ' ' => {}
                _ => {
                    return Err(format!(
                        "`{shown}` is not a CPF or CNPJ: `{c}` is not allowed; use digits, ., -, / and spaces"
                    ));
                }
            }
        }

        let (kind, weights, make): (&str, &[u32], fn(String) -> Self) = match digits.len() {
            11 => ("CPF", &CPF_WEIGHTS, Self::Cpf),
            14 => ("CNPJ", &CNPJ_WEIGHTS, Self::Cnpj),
            count => {
                return Err(format!(
                    "`{shown}` is not a CPF or CNPJ: it has {count} digits, a CPF has 11 and a CNPJ 14"
                ));
            }
        };
        let values: Vec<u32> = digits.bytes().map(|b| u32::from(b - b'0')).collect();
        if values.iter().all(|&value| value == values[0]) {
            return Err(format!(
                "`{shown}` is not a valid {kind}: a repeated digit is not a real number"
            ));
        }
        if !check_digits_match(&values, weights) {
            return Err(format!(
                "`{shown}` is not a valid {kind}: its check digits are wrong"
            ));
        }
        Ok(make(digits))
    }

    /// The digits only, e.g. `52998224725`.
    pub fn digits(&self) -> &str {
        match self {
            Self::Cpf(digits) | Self::Cnpj(digits) => digits,
        }
    }

    /// `"CPF"` or `"CNPJ"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Cpf(_) => "CPF",
            Self::Cnpj(_) => "CNPJ",
        }
    }

    /// The usual presentation: `123.456.789-09` for a CPF, `12.345.678/0001-95` for a CNPJ.
    /// A value not made of exactly 11 (CPF) or 14 (CNPJ) ASCII digits, which only direct
    /// construction of a variant can produce, is returned as stored.
    pub fn formatted(&self) -> String {
        let digits = self.digits();
        let (expected, cuts): (usize, &[(usize, char)]) = match self {
            Self::Cpf(_) => (11, &[(3, '.'), (6, '.'), (9, '-')]),
            Self::Cnpj(_) => (14, &[(2, '.'), (5, '.'), (8, '/'), (12, '-')]),
        };
        if digits.len() != expected || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return digits.to_string();
        }
        let mut formatted = String::with_capacity(expected + cuts.len());
        for (index, digit) in digits.chars().enumerate() {
            if let Some((_, separator)) = cuts.iter().find(|(at, _)| *at == index) {
                formatted.push(*separator);
            }
            formatted.push(digit);
        }
        formatted
    }
}

/// Whether the last two of `values` are the modulo-11 check digits of the ones before them.
/// The first check digit uses the last `len - 2` weights over the body, the second all
/// `len - 1` weights over the body and the first check digit.
fn check_digits_match(values: &[u32], weights: &[u32]) -> bool {
    let body = values.len() - 2;
    (body..values.len()).all(|position| {
        let sum: u32 = values[..position]
            .iter()
            .zip(&weights[weights.len() - position..])
            .map(|(value, weight)| value * weight)
            .sum();
        let remainder = sum % 11;
        let check = if remainder < 2 { 0 } else { 11 - remainder };
        values[position] == check
    })
}

#[cfg(test)]
mod tests {
    use super::TaxDocument;

    /// Independent check-digit oracle: weights 2, 3, 4, … from the rightmost digit, wrapping
    /// after `max_weight` (9 for CNPJ; never reached for CPF), digit = (10·sum mod 11) mod 10.
    fn complete(body: &str, max_weight: u32) -> String {
        let mut digits: Vec<u32> = body.chars().filter_map(|c| c.to_digit(10)).collect();
        for _ in 0..2 {
            let sum: u32 = digits
                .iter()
                .rev()
                .enumerate()
                .map(|(index, digit)| digit * (2 + index as u32 % (max_weight - 1)))
                .sum();
            digits.push(sum * 10 % 11 % 10);
        }
        digits.iter().map(|digit| digit.to_string()).collect()
    }

    fn cpf(body: &str) -> String {
        complete(body, 11)
    }

    fn cnpj(body: &str) -> String {
        complete(body, 9)
    }

    #[test]
    fn oracle_agrees_with_the_brief_examples() {
        assert_eq!(cpf("529982247"), "52998224725");
        assert_eq!(cpf("123456789"), "12345678909");
        assert_eq!(cnpj("112223330001"), "11222333000181");
        assert_eq!(cnpj("123456780001"), "12345678000195");
    }

    #[test]
    fn accepts_valid_cpf() {
        let document = TaxDocument::parse("529.982.247-25").expect("valid CPF");
        assert_eq!(document, TaxDocument::Cpf("52998224725".to_string()));
        assert_eq!(document.digits(), "52998224725");
        assert_eq!(document.kind(), "CPF");
        assert_eq!(document.formatted(), "529.982.247-25");
        assert_eq!(
            TaxDocument::parse(" 52998224725 ").expect("unformatted CPF"),
            document
        );
        assert_eq!(
            TaxDocument::parse("123.456.789-09")
                .expect("valid CPF")
                .formatted(),
            "123.456.789-09"
        );
    }

    #[test]
    fn accepts_valid_cnpj() {
        let document = TaxDocument::parse("11.222.333/0001-81").expect("valid CNPJ");
        assert_eq!(document, TaxDocument::Cnpj("11222333000181".to_string()));
        assert_eq!(document.digits(), "11222333000181");
        assert_eq!(document.kind(), "CNPJ");
        assert_eq!(document.formatted(), "11.222.333/0001-81");
        assert_eq!(
            TaxDocument::parse("11222333000181").expect("unformatted CNPJ"),
            document
        );
        assert_eq!(
            TaxDocument::parse("12.345.678/0001-95")
                .expect("valid CNPJ")
                .formatted(),
            "12.345.678/0001-95"
        );
    }

    #[test]
    fn refuses_wrong_check_digits() {
        for bad in [
            "529.982.247-24",
            "529.982.247-15",
            "11.222.333/0001-82",
            "11.222.333/0001-71",
        ] {
            let error = TaxDocument::parse(bad).expect_err(bad);
            assert!(error.contains("check digits"), "{bad:?}: {error}");
        }
    }

    /// For many bodies, exactly the oracle's pair of check digits out of all 100 is accepted.
    #[test]
    fn exactly_one_pair_of_check_digits_is_valid() {
        let seeds = (0u64..200)
            .map(|seed| seed.wrapping_mul(6_364_136_223_846_793_005) % 1_000_000_000_000);
        for seed in seeds {
            for (length, valid) in [(9, cpf as fn(&str) -> String), (12, cnpj)] {
                let body = format!("{seed:012}")[12 - length..].to_string();
                let expected = valid(&body);
                for pair in 0..100 {
                    let candidate = format!("{body}{pair:02}");
                    let repeated = candidate.bytes().all(|b| b == candidate.as_bytes()[0]);
                    assert_eq!(
                        TaxDocument::parse(&candidate).is_ok(),
                        candidate == expected && !repeated,
                        "{candidate}"
                    );
                }
            }
        }
    }

    #[test]
    fn refuses_repeated_digits() {
        for digit in 0..10 {
            let cpf = digit.to_string().repeat(11);
            let cnpj = digit.to_string().repeat(14);
            for bad in [cpf, cnpj] {
                let error = TaxDocument::parse(&bad).expect_err(&bad);
                assert!(error.contains("repeated"), "{bad}: {error}");
            }
        }
        assert!(TaxDocument::parse("111.111.111-11").is_err());
        assert!(TaxDocument::parse("00.000.000/0000-00").is_err());
    }

    #[test]
    fn refuses_malformed_input() {
        for bad in [
            "",
            "   ",
            "-./",
            "529.982.247-2",
            "529.982.247-255",
            "5299822472",
            "1122233300018",
            "112223330001811",
            "529.982.247_25",
            "529,982,247-25",
            "CPF 529.982.247-25",
            "11.222.333/0001-8A",
            "12.ABC.345/01DE-35",
            "5299822\n4725",
            "５２９９８２２４７２５",
        ] {
            assert!(TaxDocument::parse(bad).is_err(), "{bad:?} accepted");
        }
        let error = TaxDocument::parse("1234").expect_err("too short");
        assert!(error.contains("4 digits"), "{error}");
    }
}
