//! The public safety suites, read from their own files unchanged and recognised by their
//! columns (CSV) or shape (JSON), each prompt carrying the suite's own category so the
//! report's per-category tables are the suite's:
//!
//! | suite | file | columns used | category |
//! |---|---|---|---|
//! | HarmBench | behaviours CSV | `Behavior`, `FunctionalCategory`, `SemanticCategory`, `ContextString` | `SemanticCategory` |
//! | CatQA | nested JSON `{category: {subcategory: [question]}}` | | category |
//! | CoCoNot, generic | JSONL `prompt`[, `category`, `label`] | | `category` |
//! | XSTest | prompts CSV `id,prompt,type,label,focus,note` | its own safe/unsafe labels | `type` |
//! | AdvBench | `goal,target` | | `advbench` |
//! | StrongREJECT | `category,source,forbidden_prompt` | | `category` |
//! | SimpleSafetyTests | `id,harm_area,counter,category,prompts_final` | | `harm_area` |
//! | JailbreakBench | `Goal,Target,Behavior,Category,Source` | | `Category` |
//! | do-not-answer | `risk_area,types_of_harm,specific_harms,question` | | `types_of_harm` |
//!
//! HarmBench: `standard` behaviours by default; `contextual` ones get their context
//! prepended as HarmBench's direct-request baseline does (`{context}\n\n---\n\n{behavior}`);
//! `copyright` ones are skipped with a note (they need HarmBench's hashing classifier).
//! Rows without their own label take the side's (`harmful` → unsafe, `benign` → safe).

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tiller_data::Row;

use crate::csv_table::{csv_header, has_columns, is_jsonl, read_csv, read_jsonl_rows};
use crate::error::{input_err, EvalError, Result};
use crate::inputs::{Label, SafetyPrompt};

/// The input formats for prompt sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptFormat {
    /// `prompt`, optional `category`, optional `label` (safe|unsafe); CoCoNot's JSONL too.
    Jsonl,
    AdvBench,
    XsTest,
    HarmBench,
    CatQa,
    StrongReject,
    SimpleSafetyTests,
    JailbreakBench,
    DoNotAnswer,
}

impl PromptFormat {
    pub fn name(self) -> &'static str {
        match self {
            PromptFormat::Jsonl => "JSONL prompts",
            PromptFormat::AdvBench => "AdvBench",
            PromptFormat::XsTest => "XSTest prompts",
            PromptFormat::HarmBench => "HarmBench behaviors",
            PromptFormat::CatQa => "CatQA",
            PromptFormat::StrongReject => "StrongREJECT",
            PromptFormat::SimpleSafetyTests => "SimpleSafetyTests",
            PromptFormat::JailbreakBench => "JailbreakBench",
            PromptFormat::DoNotAnswer => "do-not-answer",
        }
    }
}

/// Which HarmBench behaviours to read (`copyright` ones are always skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HarmBenchBehaviors {
    #[default]
    Standard,
    Contextual,
    /// Standard and contextual.
    All,
}

pub const ADVBENCH_COLUMNS: &[&str] = &["goal", "target"];
pub const XSTEST_COLUMNS: &[&str] = &["id", "prompt", "type", "label", "focus", "note"];
pub const HARMBENCH_COLUMNS: &[&str] = &[
    "Behavior",
    "FunctionalCategory",
    "SemanticCategory",
    "ContextString",
];
pub const STRONGREJECT_COLUMNS: &[&str] = &["category", "source", "forbidden_prompt"];
pub const SST_COLUMNS: &[&str] = &["harm_area", "category", "prompts_final"];
pub const JBB_COLUMNS: &[&str] = &["Goal", "Target", "Behavior", "Category"];
pub const DNA_COLUMNS: &[&str] = &["risk_area", "types_of_harm", "question"];

/// CSV formats by their columns, most specific first.
const CSV_FORMATS: &[(PromptFormat, &[&str])] = &[
    (PromptFormat::HarmBench, HARMBENCH_COLUMNS),
    (PromptFormat::JailbreakBench, JBB_COLUMNS),
    (PromptFormat::XsTest, XSTEST_COLUMNS),
    (PromptFormat::StrongReject, STRONGREJECT_COLUMNS),
    (PromptFormat::SimpleSafetyTests, SST_COLUMNS),
    (PromptFormat::DoNotAnswer, DNA_COLUMNS),
    (PromptFormat::AdvBench, ADVBENCH_COLUMNS),
];

/// One input file read as a suite.
#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    /// The file's stem (`harmbench_behaviors_text_test`).
    pub name: String,
    pub format: PromptFormat,
    pub prompts: Vec<SafetyPrompt>,
    /// What was left out and why (shown in the report's model card).
    pub notes: Vec<String>,
}

/// A suite's name: its file stem.
pub fn suite_name(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("prompts")
        .to_owned()
}

/// The format of a prompt file, by extension and (for CSV) header, (for `.json`) shape.
pub fn detect_prompt_format(path: &Path) -> Result<PromptFormat> {
    if is_jsonl(path)? {
        if crate::csv_table::extension(path) == "json" && catqa_shaped(path)? {
            return Ok(PromptFormat::CatQa);
        }
        return Ok(PromptFormat::Jsonl);
    }
    let header = csv_header(path)?;
    if let Some((format, _)) = CSV_FORMATS.iter().find(|(_, c)| has_columns(&header, c)) {
        return Ok(*format);
    }
    let expected: Vec<String> = CSV_FORMATS
        .iter()
        .map(|(f, c)| format!("{} ({})", f.name(), c.join(",")))
        .collect();
    input_err!(
        "{}: unknown CSV prompt set: expected the columns of {}; found {}",
        path.display(),
        expected.join(", "),
        header.join(",")
    )
}

/// Whether a `.json` file holds one object (CatQA's nesting) rather than rows.
fn catqa_shaped(path: &Path) -> Result<bool> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
    Ok(text.trim_start().starts_with('{')
        && serde_json::from_str::<Value>(&text).is_ok_and(|v| {
            v.as_object().is_some_and(|o| {
                o.values().all(|c| {
                    c.as_object()
                        .is_some_and(|s| s.values().all(Value::is_array))
                })
            })
        }))
}

/// Reads a prompt set's prompts (see [`load_suite`]), HarmBench's standard behaviours.
pub fn load_prompts(
    path: &Path,
    default_label: Label,
    limit: Option<usize>,
) -> Result<Vec<SafetyPrompt>> {
    Ok(load_suite(path, default_label, limit, HarmBenchBehaviors::Standard)?.prompts)
}

/// Reads one suite file. Rows without a label of their own get `default_label`; `limit`
/// keeps the first N prompts of the file (after HarmBench's selection).
pub fn load_suite(
    path: &Path,
    default_label: Label,
    limit: Option<usize>,
    harmbench: HarmBenchBehaviors,
) -> Result<Suite> {
    let format = detect_prompt_format(path)?;
    let name = suite_name(path);
    let mut notes = Vec::new();
    let mut prompts = match format {
        PromptFormat::CatQa => read_catqa(path, &name)?,
        PromptFormat::HarmBench => {
            let rows = read_csv(path, HARMBENCH_COLUMNS, format.name(), None)?;
            let mut out = Vec::new();
            let mut skipped = [0usize; 2]; // copyright, not selected
            for row in &rows {
                let kind = row.text("FunctionalCategory")?;
                let take = match (kind, harmbench) {
                    ("copyright", _) => {
                        skipped[0] += 1;
                        continue;
                    }
                    ("standard", HarmBenchBehaviors::Standard | HarmBenchBehaviors::All)
                    | ("contextual", HarmBenchBehaviors::Contextual | HarmBenchBehaviors::All) => true,
                    ("standard" | "contextual", _) => false,
                    (other, _) => input_err!(
                        "{}: field `FunctionalCategory` must be standard, contextual or copyright, got {other:?}",
                        row.location
                    ),
                };
                if !take {
                    skipped[1] += 1;
                    continue;
                }
                let behavior = row.text("Behavior")?;
                let prompt = match row.opt_text("ContextString")? {
                    Some(context) if kind == "contextual" => {
                        format!("{context}\n\n---\n\n{behavior}")
                    }
                    _ => behavior.to_owned(),
                };
                out.push(prompt_of(
                    row,
                    prompt,
                    row.text("SemanticCategory")?,
                    default_label,
                    &name,
                ));
            }
            if skipped[0] > 0 {
                notes.push(format!(
                    "{name}: {} copyright behaviours skipped (they need HarmBench's hashing classifier)",
                    skipped[0]
                ));
            }
            if skipped[1] > 0 {
                notes.push(format!(
                    "{name}: {} behaviours outside the `{harmbench:?}` selection skipped",
                    skipped[1]
                ));
            }
            out
        }
        PromptFormat::Jsonl => read_jsonl_rows(path, None)?
            .iter()
            .map(|row| {
                let label = Label::parse(row, "label")?.unwrap_or(default_label);
                let category = row.opt_text("category")?.unwrap_or(&name).to_owned();
                Ok(SafetyPrompt {
                    label,
                    ..prompt_of(
                        row,
                        row.text("prompt")?.to_owned(),
                        &category,
                        default_label,
                        &name,
                    )
                })
            })
            .collect::<Result<_>>()?,
        PromptFormat::XsTest => read_csv(path, XSTEST_COLUMNS, format.name(), None)?
            .iter()
            .map(|row| {
                let label = Label::parse(row, "label")?.ok_or_else(|| {
                    EvalError::Input(format!("{}: field `label` is empty", row.location))
                })?;
                Ok(SafetyPrompt {
                    label,
                    ..prompt_of(
                        row,
                        row.text("prompt")?.to_owned(),
                        row.text("type")?,
                        default_label,
                        &name,
                    )
                })
            })
            .collect::<Result<_>>()?,
        // AdvBench is harmful behaviours by definition, whichever side it is given on.
        PromptFormat::AdvBench => columns(
            path,
            format,
            ADVBENCH_COLUMNS,
            "goal",
            None,
            Label::Unsafe,
            &name,
        )?,
        PromptFormat::StrongReject => columns(
            path,
            format,
            STRONGREJECT_COLUMNS,
            "forbidden_prompt",
            Some("category"),
            default_label,
            &name,
        )?,
        PromptFormat::SimpleSafetyTests => columns(
            path,
            format,
            SST_COLUMNS,
            "prompts_final",
            Some("harm_area"),
            default_label,
            &name,
        )?,
        PromptFormat::JailbreakBench => columns(
            path,
            format,
            JBB_COLUMNS,
            "Goal",
            Some("Category"),
            default_label,
            &name,
        )?,
        PromptFormat::DoNotAnswer => columns(
            path,
            format,
            DNA_COLUMNS,
            "question",
            Some("types_of_harm"),
            default_label,
            &name,
        )?,
    };
    if let Some(n) = limit {
        prompts.truncate(n);
    }
    Ok(Suite {
        name,
        format,
        prompts,
        notes,
    })
}

fn prompt_of(row: &Row, prompt: String, category: &str, label: Label, suite: &str) -> SafetyPrompt {
    SafetyPrompt {
        prompt,
        category: category.to_owned(),
        label,
        source: row.location.clone(),
        suite: suite.to_owned(),
        completion: None,
    }
}

/// A CSV suite whose prompt is one column and category another (or the format's name).
fn columns(
    path: &Path,
    format: PromptFormat,
    required: &[&str],
    prompt: &str,
    category: Option<&str>,
    label: Label,
    suite: &str,
) -> Result<Vec<SafetyPrompt>> {
    read_csv(path, required, format.name(), None)?
        .iter()
        .map(|row| {
            let category = match category {
                Some(field) => row.text(field)?.to_owned(),
                None => suite_category(format),
            };
            Ok(prompt_of(
                row,
                row.text(prompt)?.to_owned(),
                &category,
                label,
                suite,
            ))
        })
        .collect()
}

fn suite_category(format: PromptFormat) -> String {
    match format {
        PromptFormat::AdvBench => "advbench".to_owned(),
        other => other.name().to_owned(),
    }
}

/// CatQA's `{category: {subcategory: [question, ...]}}`; every question is harmful.
fn read_catqa(path: &Path, suite: &str) -> Result<Vec<SafetyPrompt>> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
    let value: Value = serde_json::from_str(&text).map_err(|source| EvalError::Json {
        path: path.to_owned(),
        source,
    })?;
    let mut out = Vec::new();
    let Some(categories) = value.as_object() else {
        input_err!("{}: not CatQA's nested object", path.display());
    };
    for (category, subs) in categories {
        let Some(subs) = subs.as_object() else {
            input_err!(
                "{}: `{category}` must map subcategories to lists of questions",
                path.display()
            );
        };
        for (sub, questions) in subs {
            let Some(questions) = questions.as_array() else {
                input_err!(
                    "{}: `{category}.{sub}` must be a list of questions",
                    path.display()
                );
            };
            for (i, q) in questions.iter().enumerate() {
                let Some(q) = q.as_str().filter(|q| !q.trim().is_empty()) else {
                    input_err!(
                        "{}: `{category}.{sub}[{i}]` must be a non-empty string",
                        path.display()
                    );
                };
                out.push(SafetyPrompt {
                    prompt: q.to_owned(),
                    category: category.clone(),
                    label: Label::Unsafe,
                    source: format!("{}: {category}.{sub}[{i}]", path.display()),
                    suite: suite.to_owned(),
                    completion: None,
                });
            }
        }
    }
    Ok(out)
}
