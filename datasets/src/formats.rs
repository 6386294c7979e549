//! File formats: JSONL, JSON, CSV and Parquet, each read into [`RawRow`]s (a JSON object plus
//! where it came from). A row that cannot be parsed becomes a row-level error so the caller can
//! skip it (`skip_malformed`); a file that cannot be read at all is a file-level error.
//!
//! Parquet goes through the `parquet` crate's row (record) API without arrow, with the snappy
//! codec only (what HF `datasets` and pyarrow write by default): arrow would roughly triple the
//! build on two cores, and zstd / gzip would add C builds. A file using another codec fails with
//! a clear error naming the file.

use crate::error::{DatasetError, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::path::{Path, PathBuf};

/// A supported file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line (`.jsonl`, `.ndjson`).
    Jsonl,
    /// A JSON array of objects, or an object holding one under a key (`.json`).
    Json,
    /// Comma-separated values with a header line (`.csv`); every value is a string.
    Csv,
    /// Apache Parquet (`.parquet`).
    Parquet,
}

impl Format {
    /// The format a file extension names, if any.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            "json" => Some(Format::Json),
            "csv" => Some(Format::Csv),
            "parquet" => Some(Format::Parquet),
            _ => None,
        }
    }
}

/// Where a row is: a file plus a line (text formats) or a row / item index (Parquet, JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowLocation {
    /// The source file.
    pub file: PathBuf,
    /// `line` (1-based) for JSONL / CSV, `row` (0-based) for Parquet, `item` (0-based) for JSON.
    pub unit: &'static str,
    /// The line or index.
    pub index: usize,
}

impl fmt::Display for RowLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.file.display(), self.unit, self.index)
    }
}

/// One source row before field mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRow {
    /// Where it was read from.
    pub location: RowLocation,
    /// Its fields.
    pub fields: Map<String, Value>,
}

/// Options of the readers.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// For `.json` files holding an object: the key of the array of rows (default: `data`, or
    /// the object's only array-valued key).
    pub json_key: Option<String>,
}

/// Reads every row of `path` in `format`. The outer error is file-level; inner errors are
/// malformed rows.
pub fn read_file(path: &Path, format: Format, opts: &ReadOptions) -> Result<Vec<Result<RawRow>>> {
    match format {
        Format::Jsonl => read_jsonl(path),
        Format::Json => read_json(path, opts.json_key.as_deref()),
        Format::Csv => read_csv(path),
        Format::Parquet => read_parquet(path),
    }
}

fn loc(path: &Path, unit: &'static str, index: usize) -> RowLocation {
    RowLocation {
        file: path.to_path_buf(),
        unit,
        index,
    }
}

fn read_jsonl(path: &Path) -> Result<Vec<Result<RawRow>>> {
    let text = std::fs::read_to_string(path).map_err(|e| DatasetError::io(path, e))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let location = loc(path, "line", i + 1);
        rows.push(match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(fields)) => Ok(RawRow { location, fields }),
            Ok(other) => Err(DatasetError::row(
                location,
                None,
                format!("expected a JSON object, found {}", type_name(&other)),
            )),
            Err(e) => Err(DatasetError::row(
                location,
                None,
                format!("invalid JSON: {e}"),
            )),
        });
    }
    Ok(rows)
}

fn read_json(path: &Path, key: Option<&str>) -> Result<Vec<Result<RawRow>>> {
    let text = std::fs::read_to_string(path).map_err(|e| DatasetError::io(path, e))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| DatasetError::File {
        path: path.to_path_buf(),
        message: format!("invalid JSON: {e}"),
    })?;
    let items = match value {
        Value::Array(items) => items,
        Value::Object(mut obj) => {
            let key = match key {
                Some(k) => k.to_owned(),
                None if obj.get("data").is_some_and(Value::is_array) => "data".to_owned(),
                None => {
                    let arrays: Vec<&String> = obj
                        .iter()
                        .filter(|(_, v)| v.is_array())
                        .map(|(k, _)| k)
                        .collect();
                    match arrays.as_slice() {
                        [only] => (*only).clone(),
                        _ => {
                            return Err(DatasetError::File {
                                path: path.to_path_buf(),
                                message: format!(
                                    "the top-level object has {} array fields; set `json_key` to \
                                     the one holding the rows",
                                    arrays.len()
                                ),
                            })
                        }
                    }
                }
            };
            match obj.remove(&key) {
                Some(Value::Array(items)) => items,
                _ => {
                    return Err(DatasetError::File {
                        path: path.to_path_buf(),
                        message: format!("no array under key `{key}`"),
                    })
                }
            }
        }
        other => {
            return Err(DatasetError::File {
                path: path.to_path_buf(),
                message: format!(
                    "expected an array or an object, found {}",
                    type_name(&other)
                ),
            })
        }
    };
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let location = loc(path, "item", i);
            match item {
                Value::Object(fields) => Ok(RawRow { location, fields }),
                other => Err(DatasetError::row(
                    location,
                    None,
                    format!("expected a JSON object, found {}", type_name(&other)),
                )),
            }
        })
        .collect())
}

fn read_csv(path: &Path) -> Result<Vec<Result<RawRow>>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .map_err(|e| DatasetError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let headers = reader
        .headers()
        .map_err(|e| DatasetError::File {
            path: path.to_path_buf(),
            message: format!("cannot read the header line: {e}"),
        })?
        .clone();
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let row = match record {
            Ok(record) => {
                let line = record.position().map_or(i + 2, |p| p.line() as usize);
                let location = loc(path, "line", line);
                if record.len() != headers.len() {
                    Err(DatasetError::row(
                        location,
                        None,
                        format!("{} values for {} columns", record.len(), headers.len()),
                    ))
                } else {
                    let fields = headers
                        .iter()
                        .zip(record.iter())
                        .map(|(h, v)| (h.to_owned(), Value::String(v.to_owned())))
                        .collect();
                    Ok(RawRow { location, fields })
                }
            }
            Err(e) => {
                let line = e.position().map_or(i + 2, |p| p.line() as usize);
                Err(DatasetError::row(
                    loc(path, "line", line),
                    None,
                    e.to_string(),
                ))
            }
        };
        rows.push(row);
    }
    Ok(rows)
}

fn read_parquet(path: &Path) -> Result<Vec<Result<RawRow>>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = std::fs::File::open(path).map_err(|e| DatasetError::io(path, e))?;
    let file_err = |e: parquet::errors::ParquetError| DatasetError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let reader = SerializedFileReader::new(file).map_err(file_err)?;
    let iter = reader.get_row_iter(None).map_err(file_err)?;
    let mut rows = Vec::new();
    for (i, row) in iter.enumerate() {
        let location = loc(path, "row", i);
        match row {
            Ok(row) => match row.to_json_value() {
                Value::Object(fields) => rows.push(Ok(RawRow { location, fields })),
                other => rows.push(Err(DatasetError::row(
                    location,
                    None,
                    format!("expected a record, found {}", type_name(&other)),
                ))),
            },
            // A decoding error usually poisons the rest of the column chunk: stop here.
            Err(e) => return Err(file_err(e)),
        }
    }
    Ok(rows)
}

/// A short name of a JSON value's type, for messages.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
