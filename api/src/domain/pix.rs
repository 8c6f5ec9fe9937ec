//! `BrCode`: a static PIX charge as a BR Code payload ("PIX copia e cola").
//!
//! What [`build`] guarantees: the text follows BACEN's BR Code manual (EMV QRCPS-MPM fields,
//! each a 2-digit id, a 2-digit length and the value) — payload format `01`, the PIX account
//! template `26` (GUI `br.gov.bcb.pix`, the key, an optional description), category `0000`,
//! currency `986` (real), an optional amount, country `BR`, merchant name and city, the
//! transaction id in template `62`, and last the CRC16 of everything before it in field `63`.
//! Every character is printable ASCII, so lengths counted in characters and in bytes agree.
//! The point-of-initiation field `01` is left out, as in the manual's static example: a
//! static code may be paid more than once.
//!
//! Names and cities are shown to the payer, not used to route money, so they are cleaned and
//! cut to fit (accents stripped, other non-ASCII dropped, then truncated to 25 and 15
//! characters). The key, transaction id, amount and description decide where money goes or
//! how it is reconciled, so anything wrong with them is refused instead. Whether the key is
//! registered in the DICT is not checked.

use std::fmt;

use crate::domain::document::TaxDocument;

/// What to charge: the receiver's key and the details printed in the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixCharge<'a> {
    /// The receiver's PIX key; see [`validate_key`] for the accepted forms.
    pub key: &'a str,
    pub merchant_name: &'a str,
    pub merchant_city: &'a str,
    /// Centavos; `None` lets the payer type the amount.
    pub amount_minor: Option<i64>,
    /// `***` for none, else 1 to 25 letters and digits; see [`validate_txid`].
    pub txid: &'a str,
    /// Free text shown to the payer; it shares field 26 with the key, so its room shrinks as
    /// the key grows.
    pub description: Option<&'a str>,
}

/// A complete BR Code payload, CRC included, ready to paste or render as a QR code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BrCode(String);

impl BrCode {
    /// The payload, e.g. `000201…63041D3D`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BrCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The longest key the DICT accepts (an e-mail address can be this long).
const MAX_KEY_CHARS: usize = 77;
/// The longest transaction id a static code may carry.
const MAX_TXID_CHARS: usize = 25;
/// Limits of fields 59 and 60.
const MAX_NAME_CHARS: usize = 25;
const MAX_CITY_CHARS: usize = 15;
/// An EMV value length is two digits.
const MAX_FIELD_CHARS: usize = 99;
/// Field 54 holds at most 13 characters, `9999999999.99`.
const MAX_AMOUNT_MINOR: i64 = 999_999_999_999;
/// The globally unique identifier of the PIX arrangement, sub-field 00 of field 26.
const PIX_GUI: &str = "br.gov.bcb.pix";

/// Builds the BR Code of `charge`.
///
/// Refused: an invalid key or transaction id, an amount that is zero, negative or longer than
/// field 54 allows, a name or city with nothing printable left after cleaning, and a
/// description that does not fit next to the key in field 26.
pub fn build(charge: &PixCharge) -> Result<BrCode, String> {
    let key = validate_key(charge.key)?;
    validate_txid(charge.txid)?;

    let amount = match charge.amount_minor {
        None => None,
        Some(minor) if minor <= 0 => {
            return Err(format!(
                "the PIX amount must be positive, got {minor} centavos; leave it empty to let the payer choose"
            ));
        }
        Some(minor) if minor > MAX_AMOUNT_MINOR => {
            return Err(format!(
                "the PIX amount of {minor} centavos is too large: a BR Code holds at most 9999999999.99"
            ));
        }
        Some(minor) => Some(format!("{}.{:02}", minor / 100, minor % 100)),
    };

    let name = clean_text(charge.merchant_name, MAX_NAME_CHARS);
    if name.is_empty() {
        return Err(format!(
            "`{}` cannot be the merchant name of a PIX code: nothing printable is left without accents and symbols",
            charge.merchant_name
        ));
    }
    let city = clean_text(charge.merchant_city, MAX_CITY_CHARS);
    if city.is_empty() {
        return Err(format!(
            "`{}` cannot be the merchant city of a PIX code: nothing printable is left without accents and symbols",
            charge.merchant_city
        ));
    }

    let mut account = tlv("00", PIX_GUI) + tlv("01", &key).as_str();
    if let Some(text) = charge.description {
        let description = clean_text(text, usize::MAX);
        if !description.is_empty() {
            // Four characters of id and length for the description itself.
            let room = MAX_FIELD_CHARS.saturating_sub(account.len() + 4);
            if description.len() > room {
                return Err(format!(
                    "the PIX description is {} characters long; with this key at most {room} fit",
                    description.len()
                ));
            }
            account += &tlv("02", &description);
        }
    }

    let mut payload = tlv("00", "01");
    payload += &tlv("26", &account);
    payload += &tlv("52", "0000");
    payload += &tlv("53", "986");
    if let Some(amount) = amount {
        payload += &tlv("54", &amount);
    }
    payload += &tlv("58", "BR");
    payload += &tlv("59", &name);
    payload += &tlv("60", &city);
    payload += &tlv("62", &tlv("05", charge.txid));
    // The CRC covers its own id and length.
    payload += "6304";
    let crc = crc16(payload.as_bytes());
    payload += &format!("{crc:04X}");
    Ok(BrCode(payload))
}

/// One EMV field. Every caller bounds `value` to 99 ASCII characters beforehand.
fn tlv(id: &str, value: &str) -> String {
    debug_assert!(value.len() <= MAX_FIELD_CHARS && value.is_ascii());
    format!("{id}{:02}{value}", value.len())
}

/// Checks a PIX key and returns it in the form the DICT stores.
///
/// Accepted, after trimming: an e-mail address (lower-cased); a mobile phone as `+55`, area
/// code and a 9-digit number starting with 9 (spaces, `-` and parentheses are dropped, so
/// `+55 (11) 98765-4321` gives `+5511987654321`); a CPF or CNPJ with valid check digits,
/// formatted or not (digits only are kept); a random key (EVP), a UUID in 8-4-4-4-12 hex
/// form (lower-cased). Anything longer than 77 characters is refused outright.
pub fn validate_key(key: &str) -> Result<String, String> {
    let shown = key.trim();
    if shown.is_empty() {
        return Err("the PIX key is empty".to_string());
    }
    let count = shown.chars().count();
    if count > MAX_KEY_CHARS {
        return Err(format!(
            "the PIX key is {count} characters long; a key has at most {MAX_KEY_CHARS}"
        ));
    }
    if let Some(number) = shown.strip_prefix('+') {
        return phone_key(shown, number);
    }
    if shown.contains('@') {
        return email_key(shown);
    }
    if is_uuid(shown) {
        return Ok(shown.to_ascii_lowercase());
    }
    if shown
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '/' | ' '))
    {
        return TaxDocument::parse(shown)
            .map(|document| document.digits().to_string())
            .map_err(|error| {
                format!("{error} (a phone key is written as +55, area code and number)")
            });
    }
    Err(format!(
        "`{shown}` is not a PIX key: use an e-mail, a +55 mobile number, a CPF, a CNPJ or a random key (UUID)"
    ))
}

/// A `+55` mobile number; `shown` is the whole key, `number` what follows the `+`.
fn phone_key(shown: &str, number: &str) -> Result<String, String> {
    let mut digits = String::with_capacity(13);
    for c in number.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '(' | ')' => {}
            _ => {
                return Err(format!(
                    "`{shown}` is not a phone PIX key: `{c}` is not allowed; use digits, spaces, - and ()"
                ));
            }
        }
    }
    let local = digits.strip_prefix("55").ok_or_else(|| {
        format!("`{shown}` is not a phone PIX key: only Brazilian numbers (+55) can be keys")
    })?;
    let bytes = local.as_bytes();
    if bytes.len() != 11 || bytes[0] == b'0' || bytes[2] != b'9' {
        return Err(format!(
            "`{shown}` is not a phone PIX key: after +55 write the 2-digit area code and the 9-digit mobile number starting with 9"
        ));
    }
    Ok(format!("+{digits}"))
}

/// An e-mail key: one `@`, a local part of the characters e-mail allows, and a domain of at
/// least two dot-separated labels of letters, digits and inner hyphens.
fn email_key(shown: &str) -> Result<String, String> {
    let email = shown.to_ascii_lowercase();
    let invalid = |why: &str| format!("`{shown}` is not an e-mail PIX key: {why}");
    let (local, domain) = email
        .split_once('@')
        .ok_or_else(|| invalid("it has no @"))?;
    if local.is_empty()
        || !local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".!#$%&'*+/=?^_`{|}~-".contains(c))
    {
        return Err(invalid(
            "the part before @ must be letters, digits and . ! # $ % & ' * + / = ? ^ _ ` { | } ~ -",
        ));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |label: &&str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if labels.len() < 2 || !labels.iter().all(label_ok) {
        return Err(invalid(
            "the part after @ must be a domain such as example.com (letters, digits, inner hyphens)",
        ));
    }
    Ok(email)
}

/// Whether `text` is a UUID in 8-4-4-4-12 hexadecimal form (any case).
fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(index, b)| match index {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Checks a transaction id: `***` (none — the only choice for many payer apps on static
/// codes) or 1 to 25 ASCII letters and digits, the alphabet BACEN allows in field 62-05.
pub fn validate_txid(txid: &str) -> Result<(), String> {
    if txid == "***" {
        return Ok(());
    }
    if txid.is_empty() {
        return Err("the PIX transaction id is empty; use *** for none".to_string());
    }
    if let Some(c) = txid.chars().find(|c| !c.is_ascii_alphanumeric()) {
        return Err(format!(
            "`{txid}` is not a PIX transaction id: `{c}` is not allowed; use letters and digits only"
        ));
    }
    if txid.len() > MAX_TXID_CHARS {
        return Err(format!(
            "`{txid}` is not a PIX transaction id: it has {} characters, at most {MAX_TXID_CHARS}",
            txid.len()
        ));
    }
    Ok(())
}

/// CRC16-CCITT-FALSE (polynomial 0x1021, initial 0xFFFF, no reflection, no final XOR), the
/// checksum BACEN specifies for field 63.
pub fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0xFFFF, |crc, &byte| {
        (crc << 8) ^ CRC_TABLE[usize::from((crc >> 8) as u8 ^ byte)]
    })
}

/// The CRC of every byte value, one table lookup per input byte instead of eight shifts.
const CRC_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut index = 0;
    while index < 256 {
        let mut crc = (index as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[index] = crc;
        index += 1;
    }
    table
};

/// Makes `text` fit an EMV field: accents stripped, whitespace runs made one space, other
/// non-ASCII and control characters dropped, ends trimmed, then cut to `max` characters.
fn clean_text(text: &str, max: usize) -> String {
    let mut clean = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_whitespace() {
            if !clean.is_empty() && !clean.ends_with(' ') {
                clean.push(' ');
            }
        } else if c.is_ascii_graphic() {
            clean.push(c);
        } else if let Some(plain) = unaccent(c) {
            clean.push_str(plain);
        }
    }
    clean.truncate(max);
    clean.trim_end().to_string()
}

/// The unaccented spelling of a Latin-1 or Latin Extended-A letter, the letters of
/// Portuguese and of most European names; `None` for anything else.
fn unaccent(c: char) -> Option<&'static str> {
    Some(match c {
        'À'..='Å' | 'Ā' | 'Ă' | 'Ą' => "A",
        'à'..='å' | 'ā' | 'ă' | 'ą' => "a",
        'Æ' => "AE",
        'æ' => "ae",
        'Ç' | 'Ć' | 'Ĉ' | 'Ċ' | 'Č' => "C",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'Ð' | 'Ď' | 'Đ' => "D",
        'ð' | 'ď' | 'đ' => "d",
        'È'..='Ë' | 'Ē' | 'Ĕ' | 'Ė' | 'Ę' | 'Ě' => "E",
        'è'..='ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'Ĝ' | 'Ğ' | 'Ġ' | 'Ģ' => "G",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'Ĥ' | 'Ħ' => "H",
        'ĥ' | 'ħ' => "h",
        'Ì'..='Ï' | 'Ĩ' | 'Ī' | 'Ĭ' | 'Į' | 'İ' => "I",
        'ì'..='ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'Ĳ' => "IJ",
        'ĳ' => "ij",
        'Ĵ' => "J",
        'ĵ' => "j",
        'Ķ' => "K",
        'ķ' | 'ĸ' => "k",
        'Ĺ' | 'Ļ' | 'Ľ' | 'Ŀ' | 'Ł' => "L",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'Ñ' | 'Ń' | 'Ņ' | 'Ň' | 'Ŋ' => "N",
        'ñ' | 'ń' | 'ņ' | 'ň' | 'ŉ' | 'ŋ' => "n",
        'Ò'..='Ö' | 'Ø' | 'Ō' | 'Ŏ' | 'Ő' => "O",
        'ò'..='ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => "o",
        'Œ' => "OE",
        'œ' => "oe",
        'Ŕ' | 'Ŗ' | 'Ř' => "R",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'Ś' | 'Ŝ' | 'Ş' | 'Š' => "S",
        'ś' | 'ŝ' | 'ş' | 'š' | 'ſ' => "s",
        'ß' => "ss",
        'Ţ' | 'Ť' | 'Ŧ' => "T",
        'ţ' | 'ť' | 'ŧ' => "t",
        'Þ' => "TH",
        'þ' => "th",
        'Ù'..='Ü' | 'Ũ' | 'Ū' | 'Ŭ' | 'Ů' | 'Ű' | 'Ų' => "U",
        'ù'..='ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'Ŵ' => "W",
        'ŵ' => "w",
        'Ý' | 'Ŷ' | 'Ÿ' => "Y",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'Ź' | 'Ż' | 'Ž' => "Z",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::{BrCode, PixCharge, build, crc16, validate_key, validate_txid};

    /// The static example of BACEN's BR Code manual.
    const MANUAL_EXAMPLE: &str = "00020126580014br.gov.bcb.pix0136123e4567-e12b-12d1-a456-4266554400005204000053039865802BR5913Fulano de Tal6008BRASILIA62070503***63041D3D";

    fn charge() -> PixCharge<'static> {
        PixCharge {
            key: "123e4567-e12b-12d1-a456-426655440000",
            merchant_name: "Fulano de Tal",
            merchant_city: "BRASILIA",
            amount_minor: None,
            txid: "***",
            description: None,
        }
    }

    /// Independent oracle: CRC16-CCITT-FALSE one bit at a time, MSB first.
    fn crc_bitwise(data: &[u8]) -> u16 {
        let mut crc: u32 = 0xFFFF;
        for &byte in data {
            for bit in (0..8).rev() {
                let top = (crc >> 15) & 1;
                let input = u32::from(byte >> bit) & 1;
                crc = (crc << 1) & 0xFFFF;
                if top ^ input == 1 {
                    crc ^= 0x1021;
                }
            }
        }
        crc as u16
    }

    /// One EMV field read back; templates 26 and 62 carry their own sub-fields.
    #[derive(Debug, PartialEq)]
    enum Field {
        Value(String),
        Template(Vec<(String, Field)>),
    }

    /// Independent reader: splits `text` into id/length/value triples, recursing into 26 and
    /// 62 at the top level.
    fn read_fields(text: &str, top_level: bool) -> Vec<(String, Field)> {
        let mut fields = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            assert!(rest.len() >= 4, "truncated field header in {text:?}");
            let (id, after_id) = rest.split_at(2);
            let (length, after_length) = after_id.split_at(2);
            assert!(id.bytes().all(|b| b.is_ascii_digit()), "id {id:?}");
            let length: usize = length.parse().expect("two-digit length");
            assert!(after_length.len() >= length, "field {id} overruns {text:?}");
            let (value, next) = after_length.split_at(length);
            let field = if top_level && (id == "26" || id == "62") {
                Field::Template(read_fields(value, false))
            } else {
                Field::Value(value.to_string())
            };
            fields.push((id.to_string(), field));
            rest = next;
        }
        fields
    }

    /// Reads a whole code, checking that it is ASCII and ends in a correct field 63.
    fn read_code(code: &BrCode) -> Vec<(String, Field)> {
        let text = code.as_str();
        assert!(text.bytes().all(|b| (0x20..0x7F).contains(&b)), "{text}");
        let (body, crc) = text.split_at(text.len() - 4);
        assert!(body.ends_with("6304"), "{text}");
        assert_eq!(
            crc,
            format!("{:04X}", crc_bitwise(body.as_bytes())),
            "{text}"
        );
        let mut fields = read_fields(text, true);
        let (last_id, _) = fields.pop().expect("fields");
        assert_eq!(last_id, "63");
        fields
    }

    fn value(s: &str) -> Field {
        Field::Value(s.to_string())
    }

    /// What `read_code` must give back for a charge, once its texts are cleaned as expected.
    fn expected_fields(
        key: &str,
        name: &str,
        city: &str,
        amount: Option<&str>,
        txid: &str,
        description: Option<&str>,
    ) -> Vec<(String, Field)> {
        let mut account = vec![
            ("00".to_string(), value("br.gov.bcb.pix")),
            ("01".to_string(), value(key)),
        ];
        if let Some(description) = description {
            account.push(("02".to_string(), value(description)));
        }
        let mut fields = vec![
            ("00".to_string(), value("01")),
            ("26".to_string(), Field::Template(account)),
            ("52".to_string(), value("0000")),
            ("53".to_string(), value("986")),
        ];
        if let Some(amount) = amount {
            fields.push(("54".to_string(), value(amount)));
        }
        fields.extend([
            ("58".to_string(), value("BR")),
            ("59".to_string(), value(name)),
            ("60".to_string(), value(city)),
            (
                "62".to_string(),
                Field::Template(vec![("05".to_string(), value(txid))]),
            ),
        ]);
        fields
    }

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc16(b"123456789"), 0x29B1);
        assert_eq!(crc_bitwise(b"123456789"), 0x29B1);
        assert_eq!(crc16(b""), 0xFFFF);
        let body = &MANUAL_EXAMPLE[..MANUAL_EXAMPLE.len() - 4];
        assert_eq!(crc16(body.as_bytes()), 0x1D3D);
        assert_eq!(crc_bitwise(body.as_bytes()), 0x1D3D);
    }

    #[test]
    fn builds_the_manual_example_exactly() {
        let code = build(&charge()).expect("manual example");
        assert_eq!(code.as_str(), MANUAL_EXAMPLE);
        assert_eq!(code.to_string(), MANUAL_EXAMPLE);
        assert_eq!(
            read_code(&code),
            expected_fields(
                "123e4567-e12b-12d1-a456-426655440000",
                "Fulano de Tal",
                "BRASILIA",
                None,
                "***",
                None
            )
        );
    }

    #[test]
    fn writes_the_amount_with_two_decimals() {
        for (minor, written) in [
            (1050, "540510.50"),
            (1, "54040.01"),
            (100, "54041.00"),
            (999_999_999_999, "54139999999999.99"),
        ] {
            let code = build(&PixCharge {
                amount_minor: Some(minor),
                ..charge()
            })
            .expect("amount");
            assert!(code.as_str().contains(written), "{minor}: {code}");
            let amount = &written[4..];
            assert_eq!(
                read_code(&code),
                expected_fields(
                    "123e4567-e12b-12d1-a456-426655440000",
                    "Fulano de Tal",
                    "BRASILIA",
                    Some(amount),
                    "***",
                    None
                )
            );
        }
    }

    #[test]
    fn refuses_amounts_that_are_not_positive_or_do_not_fit() {
        for minor in [0, -1, 1_000_000_000_000, i64::MAX, i64::MIN] {
            let error = build(&PixCharge {
                amount_minor: Some(minor),
                ..charge()
            })
            .expect_err("bad amount");
            assert!(error.contains("amount"), "{minor}: {error}");
        }
    }

    #[test]
    fn strips_accents_and_truncates_name_and_city() {
        let code = build(&PixCharge {
            key: "Loja@Example.com.br",
            merchant_name: "Padaria  Pão de Açúcar & Confeitaria Ltda",
            merchant_city: "São Paulo",
            amount_minor: Some(123_456),
            txid: "PEDIDO42",
            description: Some("Café\u{a0}com leite ½"),
        })
        .expect("accents");
        assert!(code.as_str().contains("6009Sao Paulo"), "{code}");
        assert_eq!(
            read_code(&code),
            expected_fields(
                "loja@example.com.br",
                "Padaria Pao de Acucar & C",
                "Sao Paulo",
                Some("1234.56"),
                "PEDIDO42",
                Some("Cafe com leite")
            )
        );

        let code = build(&PixCharge {
            merchant_name: "ÆØÅ Þórr Œuvre Straße Łódź",
            merchant_city: "Brasília do Sul Grande",
            ..charge()
        })
        .expect("truncation");
        let fields = read_code(&code);
        assert_eq!(
            fields[5],
            ("59".to_string(), value("AEOA THorr OEuvre Strasse"))
        );
        // Cut at 15 leaves "Brasilia do Sul", exactly the limit.
        assert_eq!(fields[6], ("60".to_string(), value("Brasilia do Sul")));

        // A cut that ends on a space does not leave it trailing.
        let code = build(&PixCharge {
            merchant_name: "Mercado Central dos João Filial",
            ..charge()
        })
        .expect("trailing space");
        assert_eq!(
            read_code(&code)[5],
            ("59".to_string(), value("Mercado Central dos Joao"))
        );
    }

    #[test]
    fn refuses_names_and_cities_with_nothing_printable() {
        let error = build(&PixCharge {
            merchant_name: "東京 ",
            ..charge()
        })
        .expect_err("name");
        assert!(error.contains("merchant name"), "{error}");
        let error = build(&PixCharge {
            merchant_city: "  ",
            ..charge()
        })
        .expect_err("city");
        assert!(error.contains("merchant city"), "{error}");
    }

    #[test]
    fn description_shares_field_26_with_the_key() {
        // 18 characters of GUI, 4 + 36 of key, 4 of description header: 37 left.
        let fits = "d".repeat(37);
        let code = build(&PixCharge {
            description: Some(fits.as_str()),
            ..charge()
        })
        .expect("fits");
        assert!(code.as_str().contains("2699"), "{code}");
        assert_eq!(
            read_code(&code),
            expected_fields(
                "123e4567-e12b-12d1-a456-426655440000",
                "Fulano de Tal",
                "BRASILIA",
                None,
                "***",
                Some(fits.as_str())
            )
        );

        let too_long = "d".repeat(38);
        let error = build(&PixCharge {
            description: Some(&too_long),
            ..charge()
        })
        .expect_err("too long");
        assert!(error.contains("at most 37"), "{error}");

        // Blank after cleaning: no sub-field 02 at all.
        let code = build(&PixCharge {
            description: Some(" ½ "),
            ..charge()
        })
        .expect("blank");
        assert_eq!(code.as_str(), MANUAL_EXAMPLE);
    }

    #[test]
    fn normalises_keys() {
        for (input, expected) in [
            (
                "123E4567-E12B-12D1-A456-426655440000",
                "123e4567-e12b-12d1-a456-426655440000",
            ),
            (
                "  Fulano.Tal+pix@Example.COM ",
                "fulano.tal+pix@example.com",
            ),
            ("+55 (11) 98765-4321", "+5511987654321"),
            ("+5561912345678", "+5561912345678"),
            ("529.982.247-25", "52998224725"),
            ("52998224725", "52998224725"),
            ("11.222.333/0001-81", "11222333000181"),
        ] {
            assert_eq!(validate_key(input).as_deref(), Ok(expected), "{input:?}");
        }
    }

    #[test]
    fn refuses_keys_that_are_not_pix_keys() {
        let long_email = format!("{}@example.com", "a".repeat(66));
        assert_eq!(long_email.len(), 78);
        let error = validate_key(&long_email).expect_err("78 characters");
        assert!(error.contains("78 characters"), "{error}");
        let longest = format!("{}@example.com", "a".repeat(65));
        assert_eq!(validate_key(&longest).as_deref(), Ok(longest.as_str()));

        for bad in [
            "",
            "   ",
            "fulano",
            "fulano@",
            "@example.com",
            "fulano@example",
            "fulano@@example.com",
            "ful ano@example.com",
            "fulano@-example.com",
            "fulano@example..com",
            "+1 415 555 2671",
            "+55 11 8765-4321",
            "+55 11 88765-4321",
            "+55 01 98765-4321",
            "+55 11 98765-43210",
            "+55 11 98765.4321",
            "52998224724",
            "111.111.111-11",
            "11.222.333/0001-80",
            "123e4567-e12b-12d1-a456-42665544000",
            "123e4567-e12b-12d1-a456-42665544000g",
            "123e4567e12b12d1a456426655440000",
            "chave aleatória",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?} accepted");
        }
        let error = validate_key("11987654321").expect_err("phone without +55");
        assert!(error.contains("+55"), "{error}");

        let error = build(&PixCharge {
            key: "fulano@example",
            ..charge()
        })
        .expect_err("build checks the key");
        assert!(error.contains("e-mail"), "{error}");
    }

    #[test]
    fn every_key_kind_round_trips() {
        for (key, stored) in [
            ("fulano@example.com", "fulano@example.com"),
            ("+55 61 91234-5678", "+5561912345678"),
            ("529.982.247-25", "52998224725"),
            ("11222333000181", "11222333000181"),
        ] {
            let code = build(&PixCharge {
                key,
                txid: "A1b2C3d4E5f6G7h8I9j0K1l2M",
                ..charge()
            })
            .expect(key);
            assert_eq!(
                read_code(&code),
                expected_fields(
                    stored,
                    "Fulano de Tal",
                    "BRASILIA",
                    None,
                    "A1b2C3d4E5f6G7h8I9j0K1l2M",
                    None
                ),
                "{key}"
            );
        }
    }

    #[test]
    fn checks_transaction_ids() {
        for good in ["***", "a", "PEDIDO2024", "A1b2C3d4E5f6G7h8I9j0K1l2M"] {
            assert_eq!(validate_txid(good), Ok(()), "{good:?}");
        }
        let error = validate_txid("abc-123").expect_err("hyphen");
        assert!(error.contains("`-`"), "{error}");
        let error = validate_txid(&"a".repeat(26)).expect_err("26 characters");
        assert!(error.contains("26 characters"), "{error}");
        let error = validate_txid("").expect_err("empty");
        assert!(error.contains("empty"), "{error}");
        for bad in ["**", "****", "*", "pedido 1", "pedidoº1", "ＡＢＣ"] {
            assert!(validate_txid(bad).is_err(), "{bad:?} accepted");
        }
        let error = build(&PixCharge {
            txid: "abc-123",
            ..charge()
        })
        .expect_err("build checks the txid");
        assert!(error.contains("transaction id"), "{error}");
    }
}
