//! Text from outside (API errors, health bodies, revision names, URLs from an API) placed in
//! GitHub Markdown — the step summary and incident issues — so that it shows as written and does
//! nothing: no `@team` mention, no link, no HTML, no heading or table break.
//!
//! Code spans and code blocks are the reliable quote: GitHub renders nothing inside them (no
//! mentions, no autolinks, no HTML). The fence is made longer than any backtick run in the text, so
//! the text cannot close it.

/// The longest run of `` ` `` in `text`.
fn longest_backtick_run(text: &str) -> usize {
    text.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

/// Control characters shown escaped; line breaks become spaces (a code span is one line, and a
/// blank line inside one would end the paragraph, and the span with it).
/// `@` gets a word joiner after it even here: GitHub reads no mention inside code, but the text
/// must not read as one to anything that scans the raw body (notifications, bots, search).
fn flatten(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\r' | '\n' | '\t' => out.push(' '),
            '@' => out.push_str("@\u{2060}"),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

fn span(text: &str) -> String {
    let fence = "`".repeat(longest_backtick_run(text) + 1);
    // A span's content that starts or ends with a backtick (or is all spaces) needs a space on both
    // sides, which CommonMark strips again.
    if text.starts_with('`') || text.ends_with('`') || text.starts_with(' ') || text.ends_with(' ')
    {
        format!("{fence} {text} {fence}")
    } else {
        format!("{fence}{text}{fence}")
    }
}

/// `text` as an inline code span on one line. Empty text gives `(empty)`, as a span can't be.
pub fn code(text: &str) -> String {
    let flat = flatten(text);
    if flat.trim().is_empty() {
        return "(empty)".to_string();
    }
    span(&flat)
}

/// `text` as an inline code span inside a table cell: as [`code`], with `|` escaped, which GFM
/// undoes inside the cell before it reads the span.
pub fn cell_code(text: &str) -> String {
    code(text).replace('|', "\\|")
}

/// `lines` as a fenced code block, one line each (line breaks inside a line become spaces):
/// nothing in it renders, links or mentions. The fence is longer than any backtick run in the
/// text, so no line can close it; `@` gets a word joiner, and `<!--` is broken up so that no line
/// reads as a hidden marker (an incident's key) to whatever searches the raw body.
pub fn code_block(lines: &[String]) -> String {
    let flat: Vec<String> = lines
        .iter()
        .map(|line| flatten(line).replace("<!--", "<\u{2060}!--"))
        .collect();
    let longest = flat
        .iter()
        .map(|line| longest_backtick_run(line))
        .max()
        .unwrap_or(0);
    let fence = "`".repeat((longest + 1).max(3));
    let mut block = format!("{fence}text\n");
    for line in &flat {
        block.push_str(line);
        block.push('\n');
    }
    block.push_str(&fence);
    block.push('\n');
    block
}

/// `text` as plain prose on one line (a title, a heading): Markdown's markup characters
/// backslash-escaped so no Markdown or HTML in it takes effect, `<` and `&` as entities, and a word joiner after each
/// `@` so it mentions no one.
pub fn text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in flatten(text).chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '@' => out.push_str("@\u{2060}"),
            // The characters that open emphasis, code, links, images, headings, tables,
            // strike-through or escapes; the rest of the punctuation (`.`, `:`, `-`, `(`…) stays
            // as written, so a title such as `v1.4.1` still reads and searches as itself.
            '\\' | '`' | '*' | '_' | '[' | ']' | '#' | '|' | '~' | '!' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// A URL an API gave us: an autolink when it is a plain `https://` or `http://` URL (an autolink
/// cannot hold spaces or `<>`, and mentions are not read inside links), else a code span.
pub fn link(url: &str) -> String {
    let plain = (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 2048
        && url.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.'
                        | b'_'
                        | b'~'
                        | b':'
                        | b'/'
                        | b'?'
                        | b'#'
                        | b'['
                        | b']'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'\''
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b','
                        | b';'
                        | b'='
                        | b'%'
                )
        });
    if plain { format!("<{url}>") } else { code(url) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_backticks_in_the_text_then_the_fence_is_longer_than_any_run() {
        assert_eq!(code("app-1"), "`app-1`");
        assert_eq!(code("a ``b`` c"), "```a ``b`` c```");
        assert_eq!(code("`x"), "`` `x ``");
        assert_eq!(code(""), "(empty)");
        assert_eq!(code("a\n\n@team"), "`a  @\u{2060}team`");
        assert_eq!(cell_code("a|b"), "`a\\|b`");
    }

    #[test]
    fn given_markdown_html_and_mentions_in_prose_then_they_are_escaped() {
        let escaped = text("@team <img src=x> [l](http://e) **b** # h\n- x");
        assert!(!escaped.contains("@team"), "{escaped}");
        assert!(!escaped.contains('<'), "{escaped}");
        assert!(escaped.contains("\\[l\\](http:"), "{escaped}");
        assert!(escaped.contains("\\*\\*b\\*\\* \\# h"), "{escaped}");
        assert_eq!(text("v1.4.1 to prod"), "v1.4.1 to prod");
        assert!(!escaped.contains('\n'), "{escaped}");
    }

    #[test]
    fn given_hostile_lines_then_the_code_block_holds_them_all() {
        let lines = vec![
            "```".to_string(),
            "a ````` run".to_string(),
            "@team <!-- shiftgate-incident: other --> <script>x</script>".to_string(),
            "two\nlines".to_string(),
        ];
        let block = code_block(&lines);
        assert_eq!(
            block,
            "``````text\n```\na ````` run\n@\u{2060}team <\u{2060}!-- shiftgate-incident: other --> <script>x</script>\ntwo lines\n``````\n"
        );
        assert_eq!(code_block(&[]), "```text\n```\n");
    }

    #[test]
    fn given_urls_then_plain_ones_link_and_odd_ones_are_quoted() {
        assert_eq!(
            link("https://github.com/o/r/issues/7"),
            "<https://github.com/o/r/issues/7>"
        );
        assert_eq!(link("https://x @team"), "`https://x @\u{2060}team`");
        assert_eq!(link("javascript:alert(1)"), "`javascript:alert(1)`");
        assert_eq!(link("https://x/>@team"), "`https://x/>@\u{2060}team`");
    }
}
