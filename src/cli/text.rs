//! Showing text that came from a job on the operator's terminal.
//!
//! Summaries, status lines, log lines, history records and captured output
//! are written by plugins (and rows by anyone who can write the database).
//! Printed raw, an escape sequence in them could clear the screen, set the
//! terminal's title, rewrite what the operator sees or hide text behind
//! bidirectional overrides. Every command that prints such text passes it
//! through [`printable`] first; the database keeps it as it came, and
//! `--json` output escapes control characters as JSON does.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` with every character that could steer a terminal shown escaped:
/// C0 controls as `\x1b`, DEL as `\x7f`, C1 controls and the bidirectional
/// formatting characters as `\u{9b}`, `\u{202e}`. Tab is kept; newline is
/// kept only when `multiline` (a log printed line by line), else escaped
/// as `\n`. Text with nothing to escape is returned as it is.
pub fn printable(text: &str, multiline: bool) -> Cow<'_, str> {
    let needs = |c: char| is_unsafe(c) && !(multiline && c == '\n');
    if !text.chars().any(needs) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !needs(c) {
            out.push(c);
        } else if u32::from(c) <= 0x7f {
            // `write!` to a String cannot fail.
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
    Cow::Owned(out)
}

/// A character a terminal may act on rather than show.
fn is_unsafe(c: char) -> bool {
    match c {
        '\t' => false,
        '\0'..='\x1f' | '\x7f'..='\u{9f}' => true,
        // Bidirectional formatting: ALM, LRM, RLM, LRE..RLO, LRI..PDI.
        '\u{061c}'
        | '\u{200e}'
        | '\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}' => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(printable("héllo\tworld", false), Cow::Borrowed(_)));
        assert!(matches!(printable("a\nb", true), Cow::Borrowed(_)));
    }

    #[test]
    fn controls_are_escaped() {
        assert_eq!(
            printable("\x1b]0;title\x07\x1b[2J", false),
            "\\x1b]0;title\\x07\\x1b[2J"
        );
        assert_eq!(printable("a\r\nb\x7f", false), "a\\x0d\\x0ab\\x7f");
        assert_eq!(printable("a\r\nb", true), "a\\x0d\nb");
        assert_eq!(printable("\u{9b}2J", false), "\\u{9b}2J");
        assert_eq!(
            printable("abc\u{202e}fed\u{2066}", false),
            "abc\\u{202e}fed\\u{2066}"
        );
        assert_eq!(printable("\0", false), "\\x00");
    }
}
