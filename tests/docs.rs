//! The plugin author's guide cannot drift from the code.
//!
//! `docs/plugins.md` shows real plugin sources. Before every fenced code
//! block it says where the block comes from:
//!
//! ```text
//! <!-- source: guest-plugins/hello/src/lib.rs -->            the whole file
//! <!-- source: guest-plugins/python-hello/app.py lines 13-58 -->   lines 13..=58
//! <!-- commands -->                                           shell commands, not checked
//! ```
//!
//! This test reads the guide and asserts that each `source:` block is,
//! byte for byte, that file (or that line range of it); that no other code
//! block exists; that every referenced file exists; and that the limits
//! tables of the guide and of `README.md` state the defaults the sandbox
//! really uses. Plain Rust, no dependencies beyond the crate itself.

use std::fmt::Write as _;
use std::path::Path;

use cojobs::sandbox::{
    DEFAULT_FUEL, DEFAULT_MEMORY_MIB, DEFAULT_OUTPUT_BYTES, DEFAULT_TIMEOUT_SECS,
};

const GUIDE: &str = "docs/plugins.md";

/// What the comment before a code block says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tag {
    /// `<!-- source: PATH -->` or `<!-- source: PATH lines A-B -->`.
    Source {
        path: String,
        lines: Option<(usize, usize)>,
    },
    /// `<!-- commands -->`.
    Commands,
}

/// One fenced code block of a Markdown file.
#[derive(Debug)]
struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    tag: Option<Tag>,
    /// The block's text: its lines, each ended by '\n'.
    text: String,
}

/// Parse a tag comment; `Err` for a comment that looks like a tag but is
/// malformed, `Ok(None)` for any other line.
fn parse_tag(line: &str) -> Result<Option<Tag>, String> {
    let t = line.trim();
    let Some(inner) = t.strip_prefix("<!--").and_then(|s| s.strip_suffix("-->")) else {
        return Ok(None);
    };
    let inner = inner.trim();
    if inner == "commands" {
        return Ok(Some(Tag::Commands));
    }
    let Some(rest) = inner.strip_prefix("source:") else {
        return Ok(None);
    };
    let rest = rest.trim();
    let (path, lines) = match rest.split_once(" lines ") {
        None => (rest, None),
        Some((path, range)) => {
            let (a, b) = range
                .trim()
                .split_once('-')
                .ok_or_else(|| format!("bad line range in {t:?}: want `lines A-B`"))?;
            let a: usize = a
                .trim()
                .parse()
                .map_err(|_| format!("bad line range in {t:?}"))?;
            let b: usize = b
                .trim()
                .parse()
                .map_err(|_| format!("bad line range in {t:?}"))?;
            if a == 0 || b < a {
                return Err(format!(
                    "bad line range in {t:?}: lines are 1-based, A <= B"
                ));
            }
            (path.trim(), Some((a, b)))
        }
    };
    if path.is_empty() || path.contains(char::is_whitespace) {
        return Err(format!("bad source path in {t:?}"));
    }
    Ok(Some(Tag::Source {
        path: path.to_string(),
        lines,
    }))
}

/// The fence that opens a code block on this line: its character and length.
fn opening_fence(line: &str) -> Option<(char, usize)> {
    let t = line.trim_start();
    if line.len() - t.len() > 3 {
        return None;
    }
    for c in ['`', '~'] {
        let n = t.chars().take_while(|&x| x == c).count();
        if n >= 3 {
            return Some((c, n));
        }
    }
    None
}

fn closes(line: &str, fence: (char, usize)) -> bool {
    let t = line.trim();
    t.chars().count() >= fence.1 && t.chars().all(|c| c == fence.0)
}

/// Every fenced code block of `md`, with the tag comment on the nearest
/// non-blank line before it. Errors: a malformed tag, an unclosed block, a
/// tag with no code block after it.
fn blocks(md: &str) -> (Vec<Block>, Vec<String>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let lines: Vec<&str> = md.lines().collect();
    // A tag waiting for its block: (line, tag).
    let mut pending: Option<(usize, Tag)> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(fence) = opening_fence(line) {
            let start = i + 1;
            let mut text = String::new();
            i += 1;
            let mut closed = false;
            while i < lines.len() {
                if closes(lines[i], fence) {
                    closed = true;
                    break;
                }
                text.push_str(lines[i]);
                text.push('\n');
                i += 1;
            }
            if !closed {
                errors.push(format!("line {start}: code block is never closed"));
            }
            out.push(Block {
                line: start,
                tag: pending.take().map(|(_, t)| t),
                text,
            });
        } else if !line.trim().is_empty() {
            if let Some((at, _)) = pending.take() {
                errors.push(format!(
                    "line {at}: a source/commands comment must be followed by a code block"
                ));
            }
            match parse_tag(line) {
                Ok(Some(tag)) => pending = Some((i + 1, tag)),
                Ok(None) => {}
                Err(e) => errors.push(format!("line {}: {e}", i + 1)),
            }
        }
        i += 1;
    }
    if let Some((at, _)) = pending {
        errors.push(format!(
            "line {at}: a source/commands comment must be followed by a code block"
        ));
    }
    (out, errors)
}

/// The expected text of a `source:` block: the file, or lines A..=B of it,
/// each line ended by '\n'.
fn expected(root: &Path, path: &str, lines: Option<(usize, usize)>) -> Result<String, String> {
    let full = root.join(path);
    let text = std::fs::read_to_string(&full)
        .map_err(|e| format!("source file {path} cannot be read: {e}"))?;
    match lines {
        None => Ok(text),
        Some((a, b)) => {
            let all: Vec<&str> = text.lines().collect();
            if b > all.len() {
                return Err(format!(
                    "{path} has {} lines, the guide quotes lines {a}-{b}",
                    all.len()
                ));
            }
            Ok(all[a - 1..b].iter().map(|l| format!("{l}\n")).collect())
        }
    }
}

/// First differing line of two texts, for a readable failure.
fn first_difference(want: &str, got: &str) -> String {
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    for k in 0..w.len().max(g.len()) {
        if w.get(k) != g.get(k) {
            return format!(
                "first difference at line {} of the block:\n      source: {:?}\n       guide: {:?}",
                k + 1,
                w.get(k).copied().unwrap_or("<end>"),
                g.get(k).copied().unwrap_or("<end>")
            );
        }
    }
    "they differ only in the final newline".to_string()
}

/// Every way the guide `md` disagrees with the files under `root`.
fn check_guide(md: &str, root: &Path) -> Vec<String> {
    let (blocks, mut errors) = blocks(md);
    for b in &blocks {
        match &b.tag {
            None => errors.push(format!(
                "line {}: code block has no `<!-- source: FILE [lines A-B] -->` or `<!-- commands -->` comment before it",
                b.line
            )),
            Some(Tag::Commands) => {}
            Some(Tag::Source { path, lines }) => match expected(root, path, *lines) {
                Err(e) => errors.push(format!("line {}: {e}", b.line)),
                Ok(want) if want != b.text => errors.push(format!(
                    "line {}: code block differs from {path}{}; {}",
                    b.line,
                    lines.map(|(a, z)| format!(" lines {a}-{z}")).unwrap_or_default(),
                    first_difference(&want, &b.text)
                )),
                Ok(_) => {}
            },
        }
    }
    errors
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn report(what: &str, errors: &[String]) {
    if !errors.is_empty() {
        let mut msg = format!("{what}: {} problem(s)\n", errors.len());
        for e in errors {
            let _ = writeln!(msg, "  - {e}");
        }
        panic!("{msg}");
    }
}

#[test]
fn guide_code_blocks_are_the_real_sources() {
    let md = read(GUIDE);
    let errors = check_guide(&md, root());
    report(GUIDE, &errors);
}

/// The guide shows code from each language's example plugin, and only
/// files the build uses (the guest plugins and the WIT).
#[test]
fn guide_quotes_each_languages_example() {
    let md = read(GUIDE);
    let (blocks, _) = blocks(&md);
    let sources: Vec<String> = blocks
        .iter()
        .filter_map(|b| match &b.tag {
            Some(Tag::Source { path, .. }) => Some(path.clone()),
            _ => None,
        })
        .collect();
    for want in [
        "guest-plugins/hello/src/lib.rs",
        "guest-plugins/python-hello/app.py",
        "guest-plugins/js-hello/app.js",
    ] {
        assert!(
            sources.iter().any(|s| s == want),
            "{GUIDE} quotes no code from {want}"
        );
    }
    for s in &sources {
        assert!(
            s.starts_with("guest-plugins/") || s.starts_with("wit/"),
            "{GUIDE} quotes {s}: code blocks must come from the plugins the tests build (guest-plugins/) or the WIT"
        );
    }
}

/// `10000000000` -> `10,000,000,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (k, c) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The table rows (lines starting with '|') of the section whose heading
/// is `heading`, up to the next heading of any level.
fn table_rows<'a>(md: &'a str, heading: &str) -> Vec<&'a str> {
    let mut in_section = false;
    let mut rows = Vec::new();
    for line in md.lines() {
        if line.starts_with('#') {
            in_section = line.trim_start_matches('#').trim() == heading;
            continue;
        }
        if in_section && line.trim_start().starts_with('|') {
            rows.push(line);
        }
    }
    rows
}

/// Each default limit appears in the row of its limit, in the table of
/// the section `heading` of `md`.
fn check_limits_table(md: &str, heading: &str) -> Vec<String> {
    let rows = table_rows(md, heading);
    if rows.is_empty() {
        return vec![format!("no table in a section headed {heading:?}")];
    }
    let expect = [
        ("fuel", thousands(DEFAULT_FUEL)),
        ("memory", format!("{DEFAULT_MEMORY_MIB} MiB")),
        ("wall clock", format!("{DEFAULT_TIMEOUT_SECS} s")),
        ("output", format!("{} KiB", DEFAULT_OUTPUT_BYTES / 1024)),
    ];
    let mut errors = Vec::new();
    for (limit, value) in expect {
        let row = rows.iter().find(|r| {
            r.split('|')
                .nth(1)
                .is_some_and(|first| first.to_lowercase().contains(limit))
        });
        match row {
            None => errors.push(format!("the limits table has no row for {limit}")),
            Some(r) => {
                // The default is the second cell.
                let default = r.split('|').nth(2).unwrap_or("");
                if !default.contains(&value) {
                    errors.push(format!(
                        "the {limit} row says {:?} but the sandbox's default is {value}: {r}",
                        default.trim()
                    ));
                }
            }
        }
    }
    errors
}

#[test]
fn readme_limits_table_states_the_real_defaults() {
    report(
        "README.md",
        &check_limits_table(&read("README.md"), "Limits and their defaults"),
    );
}

#[test]
fn guide_limits_table_states_the_real_defaults() {
    report(
        GUIDE,
        &check_limits_table(&read(GUIDE), "Limits and their defaults"),
    );
}

// ---- the checker itself: it must catch drift, or the tests above prove nothing.

/// A scratch tree with one source file, removed on drop.
struct Tree(std::path::PathBuf);

impl Tree {
    fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("cojobs-docs-test-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(dir.join("src")).expect("mkdir");
        std::fs::write(dir.join("src/a.rs"), "one\ntwo\nthree\n").expect("write");
        Tree(dir)
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn checker_accepts_matching_blocks() {
    let t = Tree::new("ok");
    let md = "# x\n\n<!-- source: src/a.rs -->\n```rust\none\ntwo\nthree\n```\n\n\
              <!-- source: src/a.rs lines 2-3 -->\n\n```\ntwo\nthree\n```\n\n\
              <!-- commands -->\n```sh\nanything at all\n```\n";
    assert_eq!(check_guide(md, &t.0), Vec::<String>::new());
}

#[test]
fn checker_catches_drift_and_missing_tags() {
    let t = Tree::new("bad");
    let cases = [
        // An edited line.
        (
            "<!-- source: src/a.rs -->\n```\none\nTWO\nthree\n```\n",
            "differs from src/a.rs",
        ),
        // A line missing at the end.
        (
            "<!-- source: src/a.rs -->\n```\none\ntwo\n```\n",
            "differs from src/a.rs",
        ),
        // The wrong range.
        (
            "<!-- source: src/a.rs lines 1-2 -->\n```\ntwo\nthree\n```\n",
            "lines 1-2",
        ),
        // A range past the end.
        (
            "<!-- source: src/a.rs lines 2-9 -->\n```\ntwo\n```\n",
            "has 3 lines",
        ),
        // A missing file.
        ("<!-- source: src/nope.rs -->\n```\n```\n", "cannot be read"),
        // No comment at all.
        (
            "Some text.\n\n```rust\nfn main() {}\n```\n",
            "has no `<!-- source",
        ),
        // A comment separated from its block by text.
        (
            "<!-- source: src/a.rs -->\nprose\n```\none\ntwo\nthree\n```\n",
            "must be followed by a code block",
        ),
        // A malformed range.
        (
            "<!-- source: src/a.rs lines 3-1 -->\n```\n```\n",
            "bad line range",
        ),
        // An unclosed block.
        ("<!-- commands -->\n```sh\nls\n", "never closed"),
    ];
    for (md, want) in cases {
        let errors = check_guide(md, &t.0);
        assert!(
            errors.iter().any(|e| e.contains(want)),
            "expected an error containing {want:?} for:\n{md}\ngot: {errors:?}"
        );
    }
}

#[test]
fn limits_check_catches_a_wrong_default() {
    assert_eq!(thousands(10_000_000_000), "10,000,000,000");
    assert_eq!(thousands(999), "999");
    assert_eq!(thousands(1000), "1,000");
    let md = "## Limits and their defaults\n\n| limit | default |\n|---|---|\n\
              | fuel | 5,000,000,000 |\n| memory | 256 MiB |\n| wall clock | 300 s |\n| output | 64 KiB |\n";
    let errors = check_limits_table(md, "Limits and their defaults");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("fuel"), "{errors:?}");
    assert!(!check_limits_table("# nothing\n", "Limits and their defaults").is_empty());
}

// ---- docs/design.md: every reference to it names a section that exists.

const DESIGN: &str = "docs/design.md";

/// GitHub's anchor for a heading: lowercase, spaces to '-', punctuation
/// other than '-' and '_' dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of every heading of `md` (outside code blocks).
fn anchors(md: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = Vec::new();
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code && line.starts_with('#') {
            out.push(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// Each `docs/design.md#anchor` in `text` (from `file`) whose anchor is
/// not one of `known`; a bare `DESIGN.md` (the file that is not in the
/// repository) too.
fn broken_design_refs(file: &str, text: &str, known: &[String]) -> Vec<String> {
    let mut errors = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.contains("DESIGN.md") {
            errors.push(format!(
                "{file}:{}: refers to DESIGN.md, which is not in the repository: {line}",
                n + 1
            ));
        }
        for (at, _) in line.match_indices("docs/design.md#") {
            let anchor: String = line[at + "docs/design.md#".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            if !known.contains(&anchor) {
                errors.push(format!(
                    "{file}:{}: docs/design.md has no section #{anchor}",
                    n + 1
                ));
            }
        }
    }
    errors
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let p = entry.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Source comments cite `docs/design.md#section`: each section exists, and
/// nothing cites the `DESIGN.md` that is not in the repository (issue 10).
#[test]
fn design_doc_references_in_the_code_resolve() {
    let known = anchors(&read(DESIGN));
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    rust_files(&root().join("tests"), &mut files);
    assert!(files.len() > 10, "found only {files:?}");
    let mut errors = Vec::new();
    let mut refs = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read source");
        if f.ends_with("tests/docs.rs") {
            continue;
        }
        refs += text.matches("docs/design.md#").count();
        let name = f.strip_prefix(root()).unwrap_or(f).display().to_string();
        errors.extend(broken_design_refs(&name, &text, &known));
    }
    assert!(refs > 0, "no source comment cites docs/design.md");
    report("source references to docs/design.md", &errors);
}

/// The design doc's own links (`](#section)`) name sections it has.
#[test]
fn design_doc_links_resolve() {
    let md = read(DESIGN);
    let known = anchors(&md);
    let errors: Vec<String> = md
        .match_indices("](#")
        .map(|(at, _)| {
            md[at + 3..]
                .chars()
                .take_while(|c| *c != ')')
                .collect::<String>()
        })
        .filter(|a| !known.contains(a))
        .map(|a| format!("{DESIGN} links to #{a}, which is not a section"))
        .collect();
    report(DESIGN, &errors);
}

#[test]
fn design_ref_checker_catches_a_missing_section() {
    let known = anchors("# Title\n## The state machine\n```\n# not a heading\n```\n");
    assert_eq!(known, vec!["title", "the-state-machine"]);
    assert!(broken_design_refs("a.rs", "// docs/design.md#the-state-machine", &known).is_empty());
    assert_eq!(
        broken_design_refs("a.rs", "// see docs/design.md#not-there.", &known).len(),
        1
    );
    assert_eq!(
        broken_design_refs("a.rs", "// see DESIGN.md", &known).len(),
        1
    );
    assert_eq!(
        slug("Claiming, leases, heartbeat and rescue"),
        "claiming-leases-heartbeat-and-rescue"
    );
}

/// The README's limits table states the ranges of `src/bounds.rs`.
#[test]
fn readme_limits_table_states_the_real_ranges() {
    use cojobs::bounds::{FUEL, MEMORY_MIB, TIMEOUT_SECS};
    let readme = read("README.md");
    let rows = table_rows(&readme, "Limits and their defaults");
    let mut errors = Vec::new();
    for (limit, bound) in [
        ("fuel", FUEL),
        ("memory", MEMORY_MIB),
        ("wall clock", TIMEOUT_SECS),
    ] {
        let want = format!(
            "{} to {}",
            thousands(bound.min.unsigned_abs()),
            thousands(bound.max.unsigned_abs())
        );
        let range = rows
            .iter()
            .find(|r| r.split('|').nth(1).is_some_and(|c| c.contains(limit)))
            .and_then(|r| r.split('|').nth(3))
            .unwrap_or("");
        if !range.contains(&want) {
            errors.push(format!(
                "the {limit} row's range is {range:?}, not {want:?}"
            ));
        }
    }
    report("README.md", &errors);
}
