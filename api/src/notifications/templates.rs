//! The template engine that writes a notification: minijinja, sandboxed.
//!
//! The sandbox is an allow-list: the environment starts empty and gets back only the filters
//! and tests a message needs (see [`environment`]); of the statements only `if` and `for` (and
//! `raw` text) are accepted, and the `*` and `**` operators are refused, because a string or a
//! list repeated in one step escapes the fuel count (see [`check_constructs`]). A template
//! reads only the variables its purpose lists ([`catalogue`]), runs on a fuel budget and a
//! recursion limit so a loop cannot hold a worker, writes at most [`MAX_OUTPUT_BYTES`], and has
//! no loader and no globals (no `range`, no `debug`). Undefined values are errors (strict),
//! never an empty string in a customer's message. Email bodies are HTML with every value escaped; the other
//! channels are plain text within the channel's length.
//!
//! Pure: no database. Which template a company uses is `services::notifications::templates`'.

pub mod catalogue;

use std::collections::HashMap;
use std::io;
use std::sync::LazyLock;

use chrono::{DateTime, NaiveDate};
use chrono_tz::Tz;
use minijinja::machinery::{Token, tokenize};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Serde, Value};
use minijinja::{
    AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior, filters, tests as engine_tests,
};

use crate::domain::money::Money;
use crate::domain::{Currency, Locale};
use crate::notifications::Channel;

pub use catalogue::{PURPOSES, Purpose, Variable, VariableKind};

/// Roughly the instructions one render may run; a real notification needs a few thousand.
const FUEL: u64 = 50_000;
/// How deep nested blocks may go.
const RECURSION_LIMIT: usize = 32;
/// The most one render may write: far above any channel's message (an email body is at most
/// 100 000 characters), far below what would strain a worker's memory.
const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// The statements a template may use: conditions and loops (`raw` text is read by the lexer
/// itself). Assignments, macros, calls, scoped blocks, filter and escape blocks, and the
/// loader's statements are not offered: a message needs none of them.
const STATEMENTS: [&str; 6] = ["if", "elif", "else", "endif", "for", "endfor"];
/// An email subject is one line of at most this many characters.
pub const SUBJECT_MAX_CHARS: usize = 200;

/// The most characters a channel carries in one message: WhatsApp's text limit, Twilio's
/// concatenated SMS limit; in-app messages are short notices.
pub fn max_chars(channel: Channel) -> usize {
    match channel {
        Channel::Whatsapp => 4096,
        Channel::Sms => 1600,
        Channel::InApp => 1000,
        Channel::Email => 100_000,
    }
}

/// Which part of a template an error is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateField {
    Subject,
    Body,
}

impl TemplateField {
    /// The field's name as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subject => "subject",
            Self::Body => "body",
        }
    }
}

/// Why a template was refused or could not be rendered; `line` is 1-based within `field`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub field: TemplateField,
    pub line: Option<usize>,
    pub message: String,
}

impl TemplateError {
    fn new(field: TemplateField, line: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            field,
            line,
            message: message.into(),
        }
    }

    fn from_engine(field: TemplateField, error: &Error) -> Self {
        let message = match (error.kind(), error.detail()) {
            (ErrorKind::OutOfFuel, _) => {
                "the template does too much work (a loop too long?)".to_string()
            }
            (kind, Some(detail)) => format!("{kind}: {detail}"),
            (kind, None) => kind.to_string(),
        };
        Self::new(field, error.line(), message)
    }
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} line {line}: {}", self.field.as_str(), self.message),
            None => write!(f, "{}: {}", self.field.as_str(), self.message),
        }
    }
}

impl std::error::Error for TemplateError {}

/// A message template for one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub channel: Channel,
    /// The email subject or the in-app title; WhatsApp and SMS have none.
    pub subject: Option<String>,
    pub body: String,
}

/// What a template renders with: the variables of the event, and how the company writes
/// amounts and dates.
#[derive(Debug, Clone)]
pub struct RenderContext {
    pub locale: Locale,
    pub timezone: Tz,
    pub variables: serde_json::Value,
}

/// A rendered message: `text` for every channel (the plain-text part of an email), `html` for
/// email only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
}

impl Template {
    /// Refuses a template that does not parse, reads a variable `purpose` does not list, or
    /// fails when rendered with the purpose's sample data; the error names the field and line.
    pub fn validate(&self, purpose: &Purpose) -> Result<(), TemplateError> {
        match (self.channel, &self.subject) {
            (Channel::Email, None) => {
                return Err(TemplateError::new(
                    TemplateField::Subject,
                    None,
                    "an email template needs a subject",
                ));
            }
            (Channel::Whatsapp | Channel::Sms, Some(_)) => {
                return Err(TemplateError::new(
                    TemplateField::Subject,
                    None,
                    format!("a {} message has no subject", self.channel.as_str()),
                ));
            }
            _ => {}
        }
        let sample = RenderContext {
            locale: Locale::DEFAULT,
            timezone: chrono_tz::America::Sao_Paulo,
            variables: purpose.sample(),
        };
        for (field, source) in self.sources() {
            check_variables(field, source, purpose, &sample)?;
        }
        self.render(&sample).map(drop)
    }

    /// Renders the template; an undefined value, a filter misused, the fuel running out or a
    /// message longer than its channel carries is an error.
    pub fn render(&self, context: &RenderContext) -> Result<Rendered, TemplateError> {
        let variables = Value::from(Serde(&context.variables));
        let subject = match &self.subject {
            Some(source) => Some(one_line_subject(&render_source(
                source,
                TemplateField::Subject,
                AutoEscape::None,
                context,
                &variables,
            )?)?),
            None => None,
        };
        let (text, html) = if self.channel == Channel::Email {
            let html = render_source(
                &self.body,
                TemplateField::Body,
                AutoEscape::Html,
                context,
                &variables,
            )?;
            (html_to_text(&html), Some(html))
        } else {
            let text = render_source(
                &self.body,
                TemplateField::Body,
                AutoEscape::None,
                context,
                &variables,
            )?;
            (text.trim().to_string(), None)
        };
        let limit = max_chars(self.channel);
        let length = text.chars().count();
        if length > limit {
            return Err(TemplateError::new(
                TemplateField::Body,
                None,
                format!(
                    "the rendered {} message is {length} characters; the limit is {limit}",
                    self.channel.as_str()
                ),
            ));
        }
        Ok(Rendered {
            subject,
            text,
            html,
        })
    }

    fn sources(&self) -> impl Iterator<Item = (TemplateField, &str)> {
        self.subject
            .as_deref()
            .map(|subject| (TemplateField::Subject, subject))
            .into_iter()
            .chain([(TemplateField::Body, self.body.as_str())])
    }
}

/// The sandboxed environment: empty but for what a message needs — the `money`, `date` and
/// `datetime` filters bound to the context's locale and time zone, and the engine's text and
/// list filters and the tests below. No globals (`range`, `dict`, `debug`), no `safe` (a value
/// must never reach an email unescaped), strict undefined, fuel, a recursion limit, no loader.
fn environment(escape: AutoEscape, context: &RenderContext) -> Environment<'static> {
    let mut env = Environment::empty();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    env.set_auto_escape_callback(move |_| escape.clone());

    for name in ["escape", "e"] {
        env.add_filter(name, filters::escape);
    }
    for name in ["default", "d"] {
        env.add_filter(name, filters::default);
    }
    for name in ["length", "count"] {
        env.add_filter(name, filters::length);
    }
    env.add_filter("upper", filters::upper);
    env.add_filter("lower", filters::lower);
    env.add_filter("title", filters::title);
    env.add_filter("capitalize", filters::capitalize);
    env.add_filter("trim", filters::trim);
    env.add_filter("replace", filters::replace);
    env.add_filter("join", filters::join);
    env.add_filter("first", filters::first);
    env.add_filter("last", filters::last);
    env.add_filter("round", filters::round);
    env.add_test("defined", engine_tests::is_defined);
    env.add_test("undefined", engine_tests::is_undefined);
    env.add_test("none", engine_tests::is_none);

    let locale = context.locale;
    env.add_filter(
        "money",
        move |value: Value, currency: Option<String>| -> Result<String, Error> {
            format_money(&value, currency.as_deref(), locale)
        },
    );
    let timezone = context.timezone;
    env.add_filter("date", move |value: Value| -> Result<String, Error> {
        format_date(&value, timezone, locale)
    });
    env.add_filter("datetime", move |value: Value| -> Result<String, Error> {
        format_datetime(&value, timezone, locale)
    });
    env
}

/// Refuses the first statement not in [`STATEMENTS`] and the first `*` or `**`, with its line.
/// Read with the engine's own lexer, so what is checked is what the engine would run.
fn check_constructs(field: TemplateField, source: &str) -> Result<(), TemplateError> {
    let mut starts_statement = false;
    for token in tokenize(source, false, SyntaxConfig::default()) {
        // A lexing error is a syntax error, which the parser reports with its line.
        let Ok((token, span)) = token else {
            return Ok(());
        };
        let line = Some(usize::from(span.start_line));
        match token {
            Token::Ident(name) if starts_statement && !STATEMENTS.contains(&name) => {
                return Err(TemplateError::new(
                    field,
                    line,
                    format!(
                        "the `{{% {name} %}}` statement is not available in notification templates; use if and for"
                    ),
                ));
            }
            Token::Mul | Token::Pow => {
                return Err(TemplateError::new(
                    field,
                    line,
                    "the `*` and `**` operators are not available in notification templates",
                ));
            }
            _ => {}
        }
        starts_statement = matches!(token, Token::BlockStart);
    }
    Ok(())
}

/// A render's output, refusing to grow past [`MAX_OUTPUT_BYTES`].
#[derive(Default)]
struct CappedOutput {
    written: Vec<u8>,
    full: bool,
}

impl io::Write for CappedOutput {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.written.len() + bytes.len() > MAX_OUTPUT_BYTES {
            self.full = true;
            return Err(io::Error::other("the render's output is full"));
        }
        self.written.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn render_source(
    source: &str,
    field: TemplateField,
    escape: AutoEscape,
    context: &RenderContext,
    variables: &Value,
) -> Result<String, TemplateError> {
    let env = environment(escape, context);
    let template = env
        .template_from_str(source)
        .map_err(|error| TemplateError::from_engine(field, &error))?;
    check_constructs(field, source)?;
    let mut output = CappedOutput::default();
    match template.render_captured_to(variables, &mut output) {
        Ok(_) => Ok(String::from_utf8_lossy(&output.written).into_owned()),
        Err(_) if output.full => Err(TemplateError::new(
            field,
            None,
            format!(
                "the template writes more than {} MiB",
                MAX_OUTPUT_BYTES / (1024 * 1024)
            ),
        )),
        Err(error) => Err(TemplateError::from_engine(field, &error)),
    }
}

/// Refuses the first variable `purpose` does not list, with the line it is first read on.
fn check_variables(
    field: TemplateField,
    source: &str,
    purpose: &Purpose,
    context: &RenderContext,
) -> Result<(), TemplateError> {
    let env = environment(AutoEscape::None, context);
    let template = env
        .template_from_str(source)
        .map_err(|error| TemplateError::from_engine(field, &error))?;
    check_constructs(field, source)?;
    let mut unknown: Vec<String> = template
        .undeclared_variables(true)
        .into_iter()
        .filter(|path| !purpose.allows(path))
        .collect();
    unknown.sort_by_key(|path| (line_of(source, path), path.clone()));
    match unknown.first() {
        None => Ok(()),
        Some(path) => Err(TemplateError::new(
            field,
            line_of(source, path),
            format!(
                "unknown variable `{path}`; {} may use: {}",
                purpose.name,
                purpose
                    .variables()
                    .map(|variable| variable.path)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// The first line (1-based) where `path` appears as a whole name.
fn line_of(source: &str, path: &str) -> Option<usize> {
    let is_name = |character: char| character.is_alphanumeric() || character == '_';
    source
        .lines()
        .position(|line| {
            line.match_indices(path).any(|(start, _)| {
                let before = line[..start].chars().next_back();
                let after = line[start + path.len()..].chars().next();
                !before.is_some_and(|c| is_name(c) || c == '.') && !after.is_some_and(is_name)
            })
        })
        .map(|index| index + 1)
}

/// A subject is one line: the line breaks a value may carry become spaces, so no value can
/// start a header.
fn one_line_subject(rendered: &str) -> Result<String, TemplateError> {
    let subject = rendered.split_whitespace().collect::<Vec<_>>().join(" ");
    let length = subject.chars().count();
    if subject.is_empty() {
        return Err(TemplateError::new(
            TemplateField::Subject,
            None,
            "the subject renders empty",
        ));
    }
    if length > SUBJECT_MAX_CHARS {
        return Err(TemplateError::new(
            TemplateField::Subject,
            None,
            format!(
                "the rendered subject is {length} characters; the limit is {SUBJECT_MAX_CHARS}"
            ),
        ));
    }
    Ok(subject)
}

/// The plain-text part of an email from its escaped HTML: block ends become line breaks, a
/// link keeps its address after its label, tags go, entities are decoded. Values were escaped
/// before, so every tag here is the template's.
fn html_to_text(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    // The open link's address and where its label starts in `text`.
    let mut link: Option<(String, usize)> = None;
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        text.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('>') else {
            rest = &rest[start..];
            break;
        };
        let raw = rest[start + 1..start + end].trim();
        let tag = raw.to_ascii_lowercase();
        let closing = tag.starts_with('/');
        let name = tag
            .trim_start_matches('/')
            .split([' ', '/'])
            .next()
            .unwrap_or_default();
        if matches!(
            name,
            "br" | "p" | "div" | "li" | "tr" | "h1" | "h2" | "h3" | "table"
        ) {
            text.push('\n');
        }
        if name == "a" && !closing {
            link = tag
                .find("href=\"")
                .and_then(|at| {
                    let value = &raw[at + 6..];
                    value.find('"').map(|close| value[..close].to_string())
                })
                .map(|href| (href, text.len()));
        } else if name == "a"
            && let Some((href, label_start)) = link.take()
            && text[label_start..].trim() != href
        {
            text.push_str(&format!(" ({href})"));
        }
        rest = &rest[start + end + 1..];
    }
    text.push_str(rest);
    let decoded = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&#x2f;", "/")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    let mut lines: Vec<&str> = Vec::new();
    for line in decoded.lines().map(str::trim) {
        if !(line.is_empty() && lines.last().is_none_or(|last| last.is_empty())) {
            lines.push(line);
        }
    }
    lines.join("\n").trim().to_string()
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

/// `{{ order.total | money }}` for `{"minor": 1234, "currency": "BRL"}`, or
/// `{{ 1234 | money("BRL") }}`.
fn format_money(value: &Value, currency: Option<&str>, locale: Locale) -> Result<String, Error> {
    let (minor, code) = match currency {
        Some(code) => (value.clone(), Value::from(code)),
        None => (value.get_attr("minor")?, value.get_attr("currency")?),
    };
    let minor = i64::try_from(minor.clone()).map_err(|_| {
        invalid(format!(
            "money needs minor units as an integer, not `{minor}`"
        ))
    })?;
    let code = code
        .as_str()
        .ok_or_else(|| invalid("money needs a currency code".to_string()))?;
    let currency = Currency::parse(code).map_err(invalid)?;
    Ok(Money::new(minor, currency).format(locale.as_str()))
}

/// The locale's way of writing a day, and a day with a time.
fn date_formats(locale: Locale) -> (&'static str, &'static str) {
    match locale.as_str() {
        "en-US" => ("%m/%d/%Y", "%m/%d/%Y %-I:%M %p"),
        _ => ("%d/%m/%Y", "%d/%m/%Y %H:%M"),
    }
}

/// An RFC 3339 instant or a calendar day `YYYY-MM-DD`; instants are moved to `timezone`.
fn parse_day(value: &Value, timezone: Tz) -> Result<NaiveDate, Error> {
    let text = value
        .as_str()
        .ok_or_else(|| invalid(format!("date needs a date text, not `{value}`")))?;
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day);
    }
    parse_instant(text, timezone).map(|instant| instant.date_naive())
}

fn parse_instant(text: &str, timezone: Tz) -> Result<DateTime<Tz>, Error> {
    DateTime::parse_from_rfc3339(text)
        .map(|instant| instant.with_timezone(&timezone))
        .map_err(|_| invalid(format!("`{text}` is not an RFC 3339 date and time")))
}

fn format_date(value: &Value, timezone: Tz, locale: Locale) -> Result<String, Error> {
    let day = parse_day(value, timezone)?;
    Ok(day.format(date_formats(locale).0).to_string())
}

fn format_datetime(value: &Value, timezone: Tz, locale: Locale) -> Result<String, Error> {
    let text = value.as_str().ok_or_else(|| {
        invalid(format!(
            "datetime needs a date and time text, not `{value}`"
        ))
    })?;
    let instant = parse_instant(text, timezone)?;
    Ok(instant.format(date_formats(locale).1).to_string())
}

/// The locales to look a template up in, in order: the one asked for, the company's, pt-BR;
/// each once.
pub fn locale_chain(requested: Option<Locale>, company: Locale) -> Vec<Locale> {
    let mut chain = Vec::with_capacity(3);
    for locale in [requested, Some(company), Some(Locale::DEFAULT)]
        .into_iter()
        .flatten()
    {
        if !chain.contains(&locale) {
            chain.push(locale);
        }
    }
    chain
}

/// The system default templates, one file per locale: `[<purpose>.<channel>]` tables with a
/// `body` and, for email and in-app, a `subject`.
const DEFAULT_FILES: [(&str, &str); 3] = [
    ("pt-BR", include_str!("templates/pt-BR.toml")),
    ("en-US", include_str!("templates/en-US.toml")),
    ("es-ES", include_str!("templates/es-ES.toml")),
];

#[derive(serde::Deserialize)]
struct DefaultEntry {
    subject: Option<String>,
    body: String,
}

type DefaultKey = (&'static str, Channel, &'static str);

static DEFAULTS: LazyLock<HashMap<DefaultKey, Template>> = LazyLock::new(|| {
    let mut defaults = HashMap::new();
    for (locale, file) in DEFAULT_FILES {
        let purposes: HashMap<String, HashMap<String, DefaultEntry>> = toml::from_str(file)
            .unwrap_or_else(|error| panic!("the {locale} default templates do not parse: {error}"));
        for (name, channels) in purposes {
            let purpose = Purpose::find(&name)
                .unwrap_or_else(|| panic!("{locale} defaults name no purpose `{name}`"));
            for (channel_name, entry) in channels {
                let channel = Channel::parse(&channel_name.to_ascii_uppercase())
                    .unwrap_or_else(|| panic!("{locale} {name}: no channel `{channel_name}`"));
                defaults.insert(
                    (purpose.name, channel, locale),
                    Template {
                        channel,
                        subject: entry.subject,
                        body: entry.body,
                    },
                );
            }
        }
    }
    defaults
});

/// The platform's own template for a built-in purpose, channel and locale.
pub fn system_default(name: &str, channel: Channel, locale: Locale) -> Option<&'static Template> {
    let purpose = Purpose::find(name)?;
    DEFAULTS.get(&(purpose.name, channel, locale.as_str()))
}

#[cfg(test)]
mod tests;
