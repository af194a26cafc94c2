//! The scorecard page: pictures first (one dot-and-interval chart per figure, every
//! checkpoint a row of the chart, the first column's value marked on the others), then the
//! table with each cell's interval and its change against the first column. Every string
//! from reports (paths, suite names) is escaped.

use std::fmt::Write as _;

use super::html::{escape, head, p_value, pct, pp};
use super::sections::interval;
use super::svg::{bar_chart, Axis, Bar};
use crate::scorecard::{Better, Cell, Scorecard};

fn better(b: Better) -> &'static str {
    match b {
        Better::Higher => "higher is better",
        Better::Lower => "lower is better",
        Better::Half => "50% is unbiased",
    }
}

/// A column's chart label: its number and the end of its name (a checkpoint's path ends
/// in what tells the columns apart, `runs/loop/grpo`), short enough for the label margin.
fn column_label(i: usize, name: &str) -> String {
    const KEEP: usize = 22;
    let n = name.chars().count();
    if n <= KEEP {
        return format!("{}. {name}", i + 1);
    }
    let tail: String = name.chars().skip(n - (KEEP - 1)).collect();
    format!("{}. …{tail}", i + 1)
}

fn change(cell: &Cell) -> String {
    match &cell.change {
        None => String::new(),
        Some(c) => format!(
            "<br><span class=\"note\">{} (p {}, {} paired)</span>",
            pp(c.delta),
            p_value(c.test.p_value),
            c.paired
        ),
    }
}

pub fn page(card: &Scorecard) -> String {
    let mut s = head("Tiller scorecard");
    let _ = write!(
        s,
        "<h1>Scorecard</h1><div class=\"sub\">{} checkpoints; the first column is the reference.</div><section><h2>Figures</h2>",
        card.columns.len()
    );
    for row in &card.rows {
        let first = row
            .cells
            .first()
            .and_then(|c| c.as_ref())
            .and_then(|c| c.value);
        let bars: Vec<Bar> = card
            .columns
            .iter()
            .zip(&row.cells)
            .enumerate()
            .map(|(i, (col, cell))| Bar {
                label: column_label(i, &col.name),
                value: cell.as_ref().and_then(|c| c.value),
                interval: cell.as_ref().and_then(|c| c.interval),
                baseline: first.filter(|_| i > 0),
                note: cell
                    .as_ref()
                    .map_or("n/a".to_owned(), |c| format!("n {}", c.n)),
            })
            .collect();
        let axis = match row.better {
            Better::Half => Axis {
                reference: Some(0.5),
                ..Axis::RATE
            },
            Better::Higher | Better::Lower => Axis::RATE,
        };
        s += &bar_chart(
            &format!("{} — {} ({})", row.suite, row.figure, better(row.better)),
            &bars,
            axis,
            "#2b6cb0",
        );
    }
    s += "<p class=\"note\">Whiskers: 95% intervals (Wilson). Hollow diamonds: the first column.</p></section>";
    s += "<section><h2>Table</h2><table><tr><th>suite</th><th>figure</th>";
    for (i, col) in card.columns.iter().enumerate() {
        let _ = write!(
            s,
            "<th>{}. {}<br><span class=\"note\">{} · {}</span></th>",
            i + 1,
            escape(&col.name),
            escape(&col.model),
            escape(&col.date)
        );
    }
    s += "</tr>";
    for row in &card.rows {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td>",
            escape(&row.suite),
            escape(&row.figure)
        );
        for cell in &row.cells {
            match cell {
                None => s += "<td>n/a</td>",
                Some(c) => {
                    let _ = write!(
                        s,
                        "<td class=\"n\">{} {}<br><span class=\"note\">n {}</span>{}</td>",
                        pct(c.value),
                        interval(c.interval),
                        c.n,
                        change(c)
                    );
                }
            }
        }
        s += "</tr>";
    }
    s += "</table><p class=\"note\">Changes: this column minus the first on the items both scored; exact McNemar test, * marks p &lt; 0.05.</p></section></main></body></html>\n";
    s
}

#[cfg(test)]
mod tests {
    use super::column_label;

    #[test]
    fn column_labels_keep_the_end_of_long_names() {
        assert_eq!(column_label(0, "runs/loop/grpo"), "1. runs/loop/grpo");
        let long = column_label(1, "/work/main/runs/loop/round2-checkpoint");
        assert_eq!(long, "2. …oop/round2-checkpoint");
        assert_eq!(long.chars().count(), 25);
    }
}
