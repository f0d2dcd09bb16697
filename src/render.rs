//! Reports for people and pipelines: text blocks, kubectl-style tables, the JSON/YAML report
//! contract with each report's source, and JUnit XML. Pure: strings in, strings out.

use std::fmt::{self, Write as _};

use serde::Serialize;

use crate::batch::Skipped;
use crate::evaluate::{Finding, Report, Severity, Verdict};

/// Where a report's object came from: a file (document number, 1-based; `List` item, 1-based,
/// when the document is a `List`), or a cluster (the API server's URL).
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum Source {
    File {
        file: String,
        document: usize,
        item: Option<usize>,
    },
    Cluster {
        cluster: String,
    },
}

impl From<&crate::facts::load::Source> for Source {
    fn from(s: &crate::facts::load::Source) -> Self {
        Self::File {
            file: s.origin.clone(),
            document: s.document,
            item: s.item,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File { file, document, item } => {
                write!(f, "{file} document {document}")?;
                if let Some(i) = item {
                    write!(f, " item {i}")?;
                }
                Ok(())
            }
            Self::Cluster { cluster } => write!(f, "cluster {cluster}"),
        }
    }
}

/// A report and where its object came from: the report contract's fields plus `source`.
#[derive(Serialize, Clone, Debug)]
pub struct Sourced {
    #[serde(flatten)]
    pub report: Report,
    pub source: Source,
}

/// The JSON/YAML document: `{"reports": [...], "skipped": [...]}` (`skipped` only when some
/// input was not evaluated, as in `/v1/evaluate`).
#[derive(Serialize, Debug)]
pub struct Document<'a> {
    pub reports: &'a [Sourced],
    #[serde(skip_serializing_if = "<[Skipped]>::is_empty")]
    pub skipped: &'a [Skipped],
}

/// Whether a verdict is a problem: shown by `--quiet`.
pub fn is_problem(v: Verdict) -> bool {
    matches!(v, Verdict::NotMigratable | Verdict::Unknown)
}

/// `namespace/name`, or `name`.
fn qualified(r: &Report) -> String {
    match &r.namespace {
        Some(ns) => format!("{ns}/{}", r.name),
        None => r.name.clone(),
    }
}

/// One report as a text block: the verdict line with the source, each finding with its
/// field and fix, the predicted condition.
pub fn text_block(s: &Sourced) -> String {
    let r = &s.report;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {}: {} ({})",
        r.kind,
        qualified(r),
        r.verdict.as_str(),
        s.source
    );
    for f in &r.findings {
        let _ = writeln!(out, "  {:<7} {}  ({})", f.severity.as_str(), f.reason, f.field);
        let _ = writeln!(out, "          {}", f.message);
        if f.severity != Severity::Info {
            let _ = writeln!(out, "          fix: {}", f.fix);
        }
    }
    if let Some(c) = &r.condition {
        let _ = writeln!(
            out,
            "  predicted condition {}={} reason={}",
            c.type_, c.status, c.reason
        );
        for line in c.message.lines() {
            let _ = writeln!(out, "    {line}");
        }
    }
    out
}

/// The counts line: `3 object(s): 1 not migratable, …`.
pub fn summary(reports: &[Sourced], skipped: usize) -> String {
    let count = |v: Verdict| reports.iter().filter(|s| s.report.verdict == v).count();
    format!(
        "{} object(s): {} not migratable, {} unknown, {} migratable, {} not applicable{}",
        reports.len(),
        count(Verdict::NotMigratable),
        count(Verdict::Unknown),
        count(Verdict::Migratable),
        count(Verdict::NotApplicable),
        if skipped == 0 {
            String::new()
        } else {
            format!("; {skipped} skipped (see stderr)")
        },
    )
}

/// The human-readable report: one block per object, then the counts; with `quiet`, only the
/// blocks of problems (NotMigratable, Unknown) and no counts.
pub fn text(reports: &[Sourced], skipped: &[Skipped], quiet: bool) -> String {
    let mut s = String::new();
    for r in reports {
        if quiet && !is_problem(r.report.verdict) {
            continue;
        }
        s.push_str(&text_block(r));
        s.push('\n');
    }
    if !quiet {
        s.push_str(&summary(reports, skipped.len()));
        s.push('\n');
    }
    s
}

/// The finding that explains a verdict: the first error, else the first warning.
pub fn first_problem(r: &Report) -> Option<&Finding> {
    r.findings
        .iter()
        .find(|f| f.severity == Severity::Error)
        .or_else(|| r.findings.iter().find(|f| f.severity == Severity::Warning))
}

/// A kubectl-style table (columns padded, three spaces apart). `wide` adds the predicted
/// condition and the field; `namespaces` the NAMESPACE column (as kubectl with `-A`).
pub fn table(reports: &[Sourced], wide: bool, namespaces: bool) -> String {
    let mut header = Vec::new();
    if namespaces {
        header.push("NAMESPACE");
    }
    header.extend(["KIND", "NAME", "VERDICT"]);
    if wide {
        header.push("CONDITION");
    }
    header.push("REASON");
    if wide {
        header.push("FIELD");
    }
    header.push("FIX");
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for s in reports {
        let r = &s.report;
        let first = first_problem(r);
        let mut row = Vec::new();
        if namespaces {
            row.push(r.namespace.clone().unwrap_or_else(|| "-".into()));
        }
        row.extend([r.kind.to_owned(), r.name.clone(), r.verdict.as_str().to_owned()]);
        if wide {
            row.push(match &r.condition {
                Some(c) => format!("{}/{}", c.status, c.reason),
                None => "-".into(),
            });
        }
        row.push(first.map_or("-".into(), |f| f.reason.to_owned()));
        if wide {
            row.push(first.map_or("-".into(), |f| f.field.to_string()));
        }
        row.push(first.map_or("-".into(), |f| one_line(&f.fix)));
        rows.push(row);
    }
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == columns {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}   ", width = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The JSON document, pretty-printed, with a final newline.
pub fn json(doc: &Document<'_>) -> String {
    let mut s = serde_json::to_string_pretty(doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

/// The same document as YAML.
pub fn yaml(doc: &Document<'_>) -> Result<String, String> {
    serde_saphyr::to_string(doc).map_err(|e| format!("rendering YAML: {e}"))
}

/// JUnit XML as Jenkins and GitLab read it: one `<testsuite>` named `suite`, one
/// `<testcase>` per object (classname `Kind/namespace`, name the object's name, `file` its
/// file), a `<failure>` for NotMigratable (and for Unknown when `fail_on_unknown`) carrying
/// the findings and fixes, `<skipped>` for NotApplicable, the findings of a passing Unknown in
/// `<system-out>`.
pub fn junit(suite: &str, reports: &[Sourced], fail_on_unknown: bool) -> String {
    use quick_xml::events::{BytesDecl, BytesText, Event};
    let fails = |v: Verdict| v == Verdict::NotMigratable || (fail_on_unknown && v == Verdict::Unknown);
    let tests = reports.len().to_string();
    let failures = reports
        .iter()
        .filter(|s| fails(s.report.verdict))
        .count()
        .to_string();
    let skipped = reports
        .iter()
        .filter(|s| s.report.verdict == Verdict::NotApplicable)
        .count()
        .to_string();
    let counts = [
        ("tests", tests.as_str()),
        ("failures", failures.as_str()),
        ("errors", "0"),
        ("skipped", skipped.as_str()),
    ];
    let suite = xml_text(suite);
    let mut w = quick_xml::Writer::new_with_indent(Vec::new(), b' ', 2);
    // Writing into a Vec cannot fail.
    let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
    let _ = w
        .create_element("testsuites")
        .with_attribute(("name", suite.as_str()))
        .with_attributes(counts)
        .write_inner_content(|w| {
            w.create_element("testsuite")
                .with_attribute(("name", suite.as_str()))
                .with_attributes(counts)
                .write_inner_content(|w| {
                    for s in reports {
                        let r = &s.report;
                        let classname = match &r.namespace {
                            Some(ns) => format!("{}/{ns}", r.kind),
                            None => r.kind.to_owned(),
                        };
                        let (classname, name) = (xml_text(&classname), xml_text(&r.name));
                        let file = match &s.source {
                            Source::File { file, .. } => Some(xml_text(file)),
                            Source::Cluster { .. } => None,
                        };
                        let mut case = w
                            .create_element("testcase")
                            .with_attribute(("classname", classname.as_str()))
                            .with_attribute(("name", name.as_str()));
                        if let Some(file) = &file {
                            case = case.with_attribute(("file", file.as_str()));
                        }
                        let body = xml_text(&text_block(s));
                        let verdict = r.verdict.as_str();
                        if fails(r.verdict) {
                            let message = match first_problem(r) {
                                Some(f) => format!("{verdict}: {} at {}", f.reason, f.field),
                                None => verdict.to_owned(),
                            };
                            let message = xml_text(&message);
                            case.write_inner_content(|w| {
                                w.create_element("failure")
                                    .with_attribute(("message", message.as_str()))
                                    .with_attribute(("type", verdict))
                                    .write_text_content(BytesText::new(&body))?;
                                Ok(())
                            })?;
                        } else if r.verdict == Verdict::NotApplicable {
                            case.write_inner_content(|w| {
                                w.create_element("skipped")
                                    .with_attribute(("message", "NotApplicable: not a KubeVirt object"))
                                    .write_empty()?;
                                Ok(())
                            })?;
                        } else if r.verdict == Verdict::Unknown {
                            case.write_inner_content(|w| {
                                w.create_element("system-out")
                                    .write_text_content(BytesText::new(&body))?;
                                Ok(())
                            })?;
                        } else {
                            case.write_empty()?;
                        }
                    }
                    Ok(())
                })?;
            Ok(())
        });
    let mut xml = String::from_utf8(w.into_inner()).unwrap_or_default();
    xml.push('\n');
    xml
}

/// Text XML 1.0 can carry: characters it forbids even escaped (most C0 controls, U+FFFE,
/// U+FFFF) become U+FFFD. Escaping `<&"'` is the writer's.
fn xml_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => '\u{fffd}',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::Finding;

    fn sourced(name: &str, verdict: Verdict, findings: Vec<Finding>) -> Sourced {
        Sourced {
            report: Report {
                api_version: "hypershift.openshift.io/v1beta1",
                kind: "NodePool",
                namespace: Some("ns".into()),
                name: name.into(),
                verdict,
                condition: None,
                findings,
            },
            source: Source::File {
                file: "a.yaml".into(),
                document: 2,
                item: Some(3),
            },
        }
    }

    #[test]
    fn junit_escapes_markup_and_drops_forbidden_characters() {
        let hostile = "<&\"'>\u{1}]]>";
        let f = Finding::error(
            "DisksNotLiveMigratable",
            format!("spec.{hostile}"),
            format!("message {hostile}"),
            format!("fix {hostile}"),
        );
        let xml = junit(
            &format!("suite {hostile}"),
            &[sourced(&format!("np{hostile}"), Verdict::NotMigratable, vec![f])],
            false,
        );
        assert!(!xml.contains('\u{1}'), "{xml}");
        assert!(xml.contains("&lt;&amp;&quot;&apos;&gt;\u{fffd}]]&gt;"), "{xml}");
        // it parses back to the original text (minus the forbidden character)
        let mut reader = quick_xml::Reader::from_str(&xml);
        let mut names = Vec::new();
        loop {
            match reader.read_event().expect("well-formed XML") {
                quick_xml::events::Event::Eof => break,
                quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                    for a in e.attributes() {
                        let a = a.unwrap();
                        if a.key.into_inner() == "name" {
                            let value = a.normalized_value(quick_xml::XmlVersion::Explicit1_0).unwrap();
                            names.push(value.into_owned());
                        }
                    }
                }
                _ => {}
            }
        }
        assert!(names.contains(&"np<&\"'>\u{fffd}]]>".to_owned()), "{names:?}");
        assert!(names.contains(&"suite <&\"'>\u{fffd}]]>".to_owned()), "{names:?}");
    }

    #[test]
    fn table_pads_columns_and_marks_missing_cells() {
        let ok = sourced("fine", Verdict::Migratable, Vec::new());
        let bad = sourced(
            "bad-one",
            Verdict::NotMigratable,
            vec![Finding::error(
                "DisksNotLiveMigratable",
                "spec.x",
                "m",
                "do  this\nthen that",
            )],
        );
        let t = table(&[ok, bad], false, true);
        assert_eq!(
            t,
            "NAMESPACE   KIND       NAME      VERDICT         REASON                   FIX\n\
             ns          NodePool   fine      Migratable      -                        -\n\
             ns          NodePool   bad-one   NotMigratable   DisksNotLiveMigratable   do this then that\n"
        );
    }
}
