//! Free text people type (names, addresses, notes, comments, descriptions): one set of rules
//! for every such input, so a cap or a refused character is never forgotten in one place.
//!
//! Text is trimmed and capped in characters. NUL and other control characters are refused:
//! PostgreSQL `text` cannot hold NUL at all, and control characters rewrite terminals and logs.
//! Newline and tab are allowed only in multi-line text (a CRLF becomes a LF). Bidirectional
//! embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069) are refused everywhere:
//! they make text display in an order other than the one stored (a "Trojan Source" name).

/// The rule one kind of free text follows: one line or several, and the most characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextRule {
    max_chars: usize,
    multi_line: bool,
}

/// A name of a person, company, product or workflow.
pub const NAME: TextRule = TextRule::single_line(200);
/// A postal address, which may span lines.
pub const ADDRESS: TextRule = TextRule::multi_line(500);
/// Notes on a customer or an order.
pub const NOTES: TextRule = TextRule::multi_line(2000);
/// A comment recorded with an order's transition.
pub const COMMENT: TextRule = TextRule::multi_line(1000);
/// A description of a webhook endpoint or the like.
pub const DESCRIPTION: TextRule = TextRule::multi_line(500);

impl TextRule {
    /// One line of at most `max_chars` characters: no newline, no tab.
    pub const fn single_line(max_chars: usize) -> Self {
        Self {
            max_chars,
            multi_line: false,
        }
    }

    /// Several lines of at most `max_chars` characters in all: newline and tab allowed.
    pub const fn multi_line(max_chars: usize) -> Self {
        Self {
            max_chars,
            multi_line: true,
        }
    }

    pub const fn max_chars(&self) -> usize {
        self.max_chars
    }

    /// The text trimmed (possibly empty), or why it is refused.
    pub fn check(&self, input: &str) -> Result<String, String> {
        let text = input.trim();
        let text = if self.multi_line && text.contains('\r') {
            text.replace("\r\n", "\n")
        } else {
            text.to_string()
        };
        if let Some(refused) = text.chars().find(|c| !self.allows(*c)) {
            return Err(match refused {
                '\0' => "NUL characters are not allowed".to_string(),
                '\n' | '\t' => "only one line is allowed (no newline or tab)".to_string(),
                c if is_bidi_control(c) => format!(
                    "bidirectional control characters (U+{:04X}) are not allowed",
                    u32::from(c)
                ),
                c => format!(
                    "control characters (U+{:04X}) are not allowed",
                    u32::from(c)
                ),
            });
        }
        if text.chars().count() > self.max_chars {
            return Err(format!("use at most {} characters", self.max_chars));
        }
        Ok(text)
    }

    fn allows(&self, c: char) -> bool {
        if is_bidi_control(c) {
            return false;
        }
        if c == '\n' || c == '\t' {
            return self.multi_line;
        }
        !c.is_control()
    }
}

/// A bare cap: multi-line text of at most that many characters.
impl From<usize> for TextRule {
    fn from(max_chars: usize) -> Self {
        Self::multi_line(max_chars)
    }
}

/// Embeddings and overrides (LRE, RLE, PDF, LRO, RLO) and isolates (LRI, RLI, FSI, PDI).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: TextRule = TextRule::single_line(10);
    const LINES: TextRule = TextRule::multi_line(10);

    #[test]
    fn accepted_text_comes_back_trimmed() {
        let cases: &[(TextRule, &str, &str)] = &[
            (LINE, "  Ana  ", "Ana"),
            (LINE, "São Paulo", "São Paulo"),
            (LINE, "", ""),
            (LINE, "مرحبا", "مرحبا"),
            (LINE, "a\u{200F}b", "a\u{200F}b"),
            (LINES, "a\nb\tc", "a\nb\tc"),
            (LINES, "a\r\nb", "a\nb"),
            (LINE, "0123456789", "0123456789"),
            (LINE, "éééééééééé", "éééééééééé"),
        ];
        for (rule, input, expected) in cases {
            assert_eq!(
                rule.check(input).as_deref(),
                Ok(*expected),
                "{input:?} under {rule:?}"
            );
        }
    }

    #[test]
    fn refused_text_says_why() {
        let cases: &[(TextRule, &str, &str)] = &[
            (LINE, "a\0b", "NUL"),
            (LINES, "a\0b", "NUL"),
            (LINE, "a\nb", "one line"),
            (LINE, "a\tb", "one line"),
            (LINES, "a\rb", "control characters (U+000D)"),
            (LINES, "a\u{1b}[2Jb", "control characters (U+001B)"),
            (LINES, "a\u{7f}b", "control characters (U+007F)"),
            (LINES, "a\u{85}b", "control characters (U+0085)"),
            (LINES, "a\u{202A}b", "bidirectional"),
            (
                LINES,
                "a\u{202E}b",
                "bidirectional control characters (U+202E)",
            ),
            (LINE, "a\u{2066}b", "bidirectional"),
            (
                LINE,
                "a\u{2069}b",
                "bidirectional control characters (U+2069)",
            ),
            (LINE, "01234567890", "at most 10 characters"),
            (LINES, "0123456789\n0", "at most 10 characters"),
        ];
        for (rule, input, reason) in cases {
            let message = rule.check(input).expect_err(input);
            assert!(message.contains(reason), "{input:?}: {message}");
        }
    }
}
