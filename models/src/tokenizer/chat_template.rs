//! Chat templates rendered the way HF transformers renders them: a Jinja template from
//! `tokenizer_config.json` / `chat_template.jinja`, evaluated by minijinja with Python-compatible
//! string methods, `trim_blocks` + `lstrip_blocks`, HF's `tojson`, `raise_exception` and
//! `strftime_now`, and `{% generation %}` blocks turned into assistant-token spans.

use crate::error::{ModelError, Result};
use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error as JinjaError, ErrorKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One chat turn: `{"role": ..., "content": ...}` as in the OpenAI / HF message format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, `tool`, ...
    pub role: String,
    /// The message text.
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role and content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Marks where a `{% generation %}` block starts in the raw output (a Unicode noncharacter).
const GEN_START: char = '\u{FDD0}';
/// Marks where a `{% generation %}` block ends in the raw output.
const GEN_END: char = '\u{FDD1}';
const TEMPLATE_NAME: &str = "chat_template";

/// A compiled chat template plus the special-token strings it is rendered with.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    has_generation: bool,
    special_tokens: BTreeMap<String, String>,
}

impl Clone for ChatTemplate {
    fn clone(&self) -> Self {
        // Compilation succeeded once for the same source; it succeeds again.
        Self::new(&self.source, self.special_tokens.clone()).unwrap_or_else(|_| Self {
            env: Environment::new(),
            source: self.source.clone(),
            has_generation: self.has_generation,
            special_tokens: self.special_tokens.clone(),
        })
    }
}

/// Rewrites `{% generation %}` / `{% endgeneration %}` tags (with any `-`/`+` whitespace
/// modifiers) into raw blocks emitting marker characters, keeping the whitespace behaviour of the
/// original tags. Returns the new source and whether any tag was found.
fn rewrite_generation_tags(source: &str) -> (String, bool) {
    let mut out = String::with_capacity(source.len() + 64);
    let mut rest = source;
    let mut found = false;
    while let Some(pos) = rest.find("{%") {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos + 2..];
        let parsed = (|| {
            let (lmod, body) = match tail.chars().next() {
                Some(c @ ('-' | '+')) => (Some(c), &tail[1..]),
                _ => (None, tail),
            };
            let trimmed = body.trim_start();
            let (word, after) = if let Some(a) = trimmed.strip_prefix("endgeneration") {
                ("endgeneration", a)
            } else if let Some(a) = trimmed.strip_prefix("generation") {
                ("generation", a)
            } else {
                return None;
            };
            let after_ws = after.trim_start();
            if after_ws.len() == after.len() && !after.starts_with(['-', '+', '%']) {
                return None; // e.g. `{% generations %}`
            }
            let (rmod, after_mod) = match after_ws.chars().next() {
                Some(c @ ('-' | '+')) => (Some(c), &after_ws[1..]),
                _ => (None, after_ws),
            };
            let end = after_mod.strip_prefix("%}")?;
            let consumed = tail.len() - end.len();
            Some((lmod, word, rmod, consumed))
        })();
        match parsed {
            Some((lmod, word, rmod, consumed)) => {
                found = true;
                let marker = if word == "generation" {
                    GEN_START
                } else {
                    GEN_END
                };
                let l = lmod.map(String::from).unwrap_or_default();
                let r = rmod.map(String::from).unwrap_or_default();
                out.push_str(&format!("{{%{l} raw %}}{marker}{{% endraw {r}%}}"));
                rest = &tail[consumed..];
            }
            None => {
                out.push_str("{%");
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    (out, found)
}

/// Formats a float as Python's `repr` does (`1.0`, `0.1`, `1e-07`, `1e+16`).
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let s = format!("{f}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

fn json_escape(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if ensure_ascii && (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Options of Python's `json.dumps` that HF's `tojson` filter exposes.
struct JsonOpts {
    ensure_ascii: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

fn python_json(
    v: &Value,
    opts: &JsonOpts,
    depth: usize,
    out: &mut String,
) -> std::result::Result<(), JinjaError> {
    use minijinja::value::ValueKind;
    let newline = |out: &mut String, level: usize| {
        if let Some(ind) = &opts.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(ind);
            }
        }
    };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if v.is_integer() {
                out.push_str(&v.to_string());
            } else {
                let f = f64::try_from(v.clone())?;
                out.push_str(&python_float(f));
            }
        }
        ValueKind::String => json_escape(v.as_str().unwrap_or_default(), opts.ensure_ascii, out),
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if opts.sort_keys {
                keys.sort();
            }
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline(out, depth + 1);
                let key = match k.as_str() {
                    Some(s) => s.to_string(),
                    None => k.to_string(),
                };
                json_escape(&key, opts.ensure_ascii, out);
                out.push_str(&opts.key_sep);
                python_json(&v.get_item(k)?, opts, depth + 1, out)?;
            }
            newline(out, depth);
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline(out, depth + 1);
                python_json(item, opts, depth + 1, out)?;
            }
            newline(out, depth);
            out.push(']');
        }
        _ => json_escape(&v.to_string(), opts.ensure_ascii, out),
    }
    Ok(())
}

/// HF's `tojson` filter: Python `json.dumps(x, ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)`.
fn tojson_filter(value: Value, kwargs: Kwargs) -> std::result::Result<Value, JinjaError> {
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let indent: Option<Value> = kwargs.get("indent")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => match v.as_str() {
            Some(s) => Some(s.to_string()),
            None => Some(" ".repeat(i64::try_from(v)?.max(0) as usize)),
        },
    };
    let (item_sep, key_sep) = match separators.as_deref() {
        Some([a, b]) => (a.clone(), b.clone()),
        Some(_) => {
            return Err(JinjaError::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair",
            ))
        }
        None if indent.is_some() => (",".into(), ": ".into()),
        None => (", ".into(), ": ".into()),
    };
    let opts = JsonOpts {
        ensure_ascii: ensure_ascii.unwrap_or(false),
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
    };
    let mut out = String::new();
    python_json(&value, &opts, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a (year, month, day), proleptic Gregorian.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Python's `strftime` for a Unix time (UTC), covering the codes chat templates use.
pub(crate) fn strftime_at(format: &str, unix_secs: i64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    let weekday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let jan1 = days - days_from_civil(y, 1, 1) + 1;
    let month_name = MONTHS[(m as usize).saturating_sub(1) % 12];
    let day_name = DAYS[weekday];
    let hour12 = if hh % 12 == 0 { 12 } else { hh % 12 };
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let no_pad = chars.peek() == Some(&'-');
        if no_pad {
            chars.next();
        }
        let num = |v: i64, w: usize| {
            if no_pad {
                v.to_string()
            } else {
                format!("{v:0w$}")
            }
        };
        match chars.next() {
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&num(y.rem_euclid(100), 2)),
            Some('m') => out.push_str(&num(m as i64, 2)),
            Some('d') => out.push_str(&num(d as i64, 2)),
            Some('e') => out.push_str(&format!("{d:2}")),
            Some('j') => out.push_str(&num(jan1, 3)),
            Some('H') => out.push_str(&num(hh, 2)),
            Some('I') => out.push_str(&num(hour12, 2)),
            Some('M') => out.push_str(&num(mm, 2)),
            Some('S') => out.push_str(&num(ss, 2)),
            Some('p') => out.push_str(if hh < 12 { "AM" } else { "PM" }),
            Some('B') => out.push_str(month_name),
            Some('b') | Some('h') => out.push_str(&month_name[..3]),
            Some('A') => out.push_str(day_name),
            Some('a') => out.push_str(&day_name[..3]),
            Some('F') => out.push_str(&format!("{y:04}-{m:02}-{d:02}")),
            Some('T') => out.push_str(&format!("{hh:02}:{mm:02}:{ss:02}")),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

fn strftime_now(format: String) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    strftime_at(&format, now)
}

/// Prints values as Jinja2 on Python does where minijinja differs: `True`/`False`/`None`.
fn python_formatter(
    out: &mut minijinja::Output,
    state: &minijinja::State,
    value: &Value,
) -> std::result::Result<(), JinjaError> {
    use minijinja::value::ValueKind;
    let text = match value.kind() {
        ValueKind::Bool => Some(if value.is_true() { "True" } else { "False" }),
        ValueKind::None => Some("None"),
        _ => None,
    };
    match text {
        Some(t) => out
            .write_str(t)
            .map_err(|e| JinjaError::new(ErrorKind::WriteFailure, e.to_string())),
        None => minijinja::escape_formatter(out, state, value),
    }
}

fn raise_exception(message: String) -> std::result::Result<Value, JinjaError> {
    Err(JinjaError::new(ErrorKind::InvalidOperation, message))
}

fn jinja_err(e: JinjaError) -> ModelError {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    ModelError::ChatTemplate(msg)
}

impl ChatTemplate {
    /// Compiles `source`. `special_tokens` maps template variables such as `bos_token` and
    /// `eos_token` to their strings (HF passes the tokenizer's special-tokens map).
    pub fn new(source: &str, special_tokens: BTreeMap<String, String>) -> Result<Self> {
        if source.contains([GEN_START, GEN_END]) {
            return Err(ModelError::ChatTemplate(
                "template contains reserved characters U+FDD0/U+FDD1".into(),
            ));
        }
        let (rewritten, has_generation) = rewrite_generation_tags(source);
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_formatter(python_formatter);
        env.add_filter("tojson", tojson_filter);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(TEMPLATE_NAME, rewritten)
            .map_err(jinja_err)?;
        Ok(Self {
            env,
            source: source.to_string(),
            has_generation,
            special_tokens,
        })
    }

    /// The template source as written in the model files.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template marks assistant text with `{% generation %}` blocks.
    pub fn has_generation_blocks(&self) -> bool {
        self.has_generation
    }

    /// Renders the conversation; with `add_generation_prompt` the header of a new assistant turn
    /// is appended.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        self.render_with_kwargs(messages, add_generation_prompt, &serde_json::Map::new())
    }

    /// Like [`ChatTemplate::render`] with extra template variables (e.g. `enable_thinking`).
    pub fn render_with_kwargs(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        kwargs: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String> {
        let (text, _) = self.render_spans(messages, add_generation_prompt, kwargs)?;
        Ok(text)
    }

    /// Renders the conversation (no generation prompt) and returns the byte spans
    /// `[start, end)` of the text inside `{% generation %}` blocks — the assistant tokens a
    /// trainer puts in the loss. Empty when the template has no such blocks.
    pub fn render_with_assistant_mask(
        &self,
        messages: &[ChatMessage],
    ) -> Result<(String, Vec<(usize, usize)>)> {
        self.render_spans(messages, false, &serde_json::Map::new())
    }

    fn render_spans(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        kwargs: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(String, Vec<(usize, usize)>)> {
        if messages.iter().any(|m| {
            m.content.contains([GEN_START, GEN_END]) || m.role.contains([GEN_START, GEN_END])
        }) {
            return Err(ModelError::ChatTemplate(
                "message contains reserved characters U+FDD0/U+FDD1".into(),
            ));
        }
        let mut ctx: BTreeMap<String, Value> = BTreeMap::new();
        for (k, v) in &self.special_tokens {
            ctx.insert(k.clone(), Value::from(v.as_str()));
        }
        ctx.insert("tools".into(), Value::from(()));
        ctx.insert("documents".into(), Value::from(()));
        for (k, v) in kwargs {
            ctx.insert(k.clone(), Value::from_serialize(v));
        }
        ctx.insert("messages".into(), Value::from_serialize(messages));
        ctx.insert(
            "add_generation_prompt".into(),
            Value::from(add_generation_prompt),
        );
        let tmpl = self.env.get_template(TEMPLATE_NAME).map_err(jinja_err)?;
        let raw = tmpl.render(Value::from(ctx)).map_err(jinja_err)?;
        if !self.has_generation {
            return Ok((raw, Vec::new()));
        }
        let mut out = String::with_capacity(raw.len());
        let mut spans = Vec::new();
        let mut open: Option<usize> = None;
        for c in raw.chars() {
            match c {
                GEN_START => open = open.or(Some(out.len())),
                GEN_END => {
                    if let Some(s) = open.take() {
                        if out.len() > s {
                            spans.push((s, out.len()));
                        }
                    }
                }
                c => out.push(c),
            }
        }
        if let Some(s) = open {
            if out.len() > s {
                spans.push((s, out.len()));
            }
        }
        Ok((out, spans))
    }
}

/// Per-token mask from token byte offsets: a token is masked in (`true`) when its
/// `[start, end)` range overlaps any span. Zero-width tokens (e.g. an inserted BOS) are `false`.
pub fn spans_to_token_mask(offsets: &[(usize, usize)], spans: &[(usize, usize)]) -> Vec<bool> {
    offsets
        .iter()
        .map(|&(s, e)| e > s && spans.iter().any(|&(a, b)| s < b && a < e))
        .collect()
}
