//! The report page: one self-contained HTML file (inline CSS and SVG, no scripts; a
//! Content-Security-Policy forbids loading anything). Every untrusted string — prompts,
//! answers, category names, paths — goes through [`escape`].

use std::fmt::Write as _;

use super::{safety_html, sections, Report};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters other than tab/newline have no business in a page.
            c if c.is_control() && c != '\n' && c != '\t' && c != '\r' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A rate as a percentage, `n/a` for None.
pub fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{:.1}%", 100.0 * v))
}

/// A signed difference in percentage points, `n/a` for None.
pub fn pp(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{:+.1} pp", 100.0 * v))
}

/// A number with `digits` decimals, `n/a` for None.
pub fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.digits$}"))
}

/// A p-value, with a star under 0.05.
pub fn p_value(p: f64) -> String {
    let star = if p < 0.05 { " *" } else { "" };
    if p < 0.001 {
        format!("&lt; 0.001{star}")
    } else {
        format!("{p:.3}{star}")
    }
}

const STYLE: &str = "
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1040px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:32px 0 8px;border-bottom:1px solid #d5d9e0;padding-bottom:4px}
h3{font-size:16px;margin:20px 0 6px}.sub{color:#5b6475}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{background:#fff;border:1px solid #d5d9e0;border-radius:8px;padding:12px 16px;min-width:200px;flex:1}
.card .k{font-size:13px;color:#5b6475}.card .v{font-size:26px;font-weight:600}.card .d{font-size:13px}
.good{color:#19734a}.bad{color:#b3261e}
table{border-collapse:collapse;background:#fff;margin:8px 0;font-size:14px}
th,td{border:1px solid #d5d9e0;padding:4px 8px;text-align:left;vertical-align:top}th{background:#eef0f4}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.chart{background:#fff;border:1px solid #d5d9e0;border-radius:6px;margin:8px 0;max-width:100%;height:auto}
.chart .ct{font-weight:600;font-size:14px}.chart .label,.chart .note,.chart .tick,.chart .na{font-size:12px;fill:#394150}
.chart .grid{stroke:#e3e6eb}.chart .ref{stroke:#777;stroke-dasharray:4 3}
.chart .whisker{stroke:#1d2330;stroke-width:1.5;fill:none}.chart .base{fill:#fff;stroke:#c2410c;stroke-width:2}
details{background:#fff;border:1px solid #d5d9e0;border-radius:6px;padding:6px 10px;margin:8px 0}
summary{cursor:pointer;font-weight:600}
pre{white-space:pre-wrap;word-break:break-word;margin:0;font:13px/1.4 ui-monospace,monospace}
.note{color:#5b6475;font-size:13px}
";

/// The page's head and opening tags, with `title` (escaped here): the style, and the
/// Content-Security-Policy that forbids loading anything. Close with `</main></body></html>`.
pub fn head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{}</title><style>{STYLE}</style></head><body><main>",
        escape(title)
    )
}

/// The whole page.
pub fn page(report: &Report) -> String {
    let mut s = head(&format!("Tiller evaluation: {}", report.card.model));
    let _ = write!(
        s,
        "<h1>Safety and bias evaluation</h1><div class=\"sub\">{model} · {date}{baseline}</div>",
        model = escape(&report.card.model),
        date = escape(&report.card.date),
        baseline = report
            .card
            .baseline
            .as_ref()
            .map_or(String::new(), |b| format!(" · baseline {}", escape(b))),
    );
    s.push_str(&sections::headline(report));
    if let Some(safety) = &report.safety {
        s.push_str(&safety_html::safety(safety));
    }
    if let Some(crows) = &report.crows_pairs {
        s.push_str(&sections::crows(crows));
    }
    if let Some(bbq) = &report.bbq {
        s.push_str(&sections::bbq(bbq));
    }
    s.push_str(&sections::helpfulness(report.helpfulness.as_ref()));
    s.push_str(&sections::model_card(&report.card));
    s.push_str("</main></body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralizes_markup() {
        assert_eq!(
            escape("<script>alert(1)</script>"),
            "&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        let img = escape("<img src=x onerror=\"alert('x')\">");
        assert_eq!(
            img,
            "&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;"
        );
        assert!(!img.contains('<') && !img.contains('"') && !img.contains('\''));
        assert_eq!(escape("a & b\u{0}"), "a &amp; b\u{fffd}");
        assert_eq!(escape("ünïcode\nline"), "ünïcode\nline");
    }

    #[test]
    fn number_formats() {
        assert_eq!(pct(Some(0.1234)), "12.3%");
        assert_eq!(pct(None), "n/a");
        assert_eq!(pp(Some(-0.05)), "-5.0 pp");
        assert_eq!(num(Some(1.23456), 2), "1.23");
        assert_eq!(p_value(0.0001), "&lt; 0.001 *");
        assert_eq!(p_value(0.5), "0.500");
    }
}
