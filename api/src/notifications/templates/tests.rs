use super::*;

fn locale(code: &str) -> Locale {
    Locale::parse(code).expect("supported locale")
}

fn context(code: &str, variables: serde_json::Value) -> RenderContext {
    RenderContext {
        locale: locale(code),
        timezone: chrono_tz::America::Sao_Paulo,
        variables,
    }
}

fn template(channel: Channel, subject: Option<&str>, body: &str) -> Template {
    Template {
        channel,
        subject: subject.map(str::to_string),
        body: body.to_string(),
    }
}

fn order_ready() -> &'static Purpose {
    Purpose::find("order_ready").expect("built in")
}

fn render_body(
    channel: Channel,
    body: &str,
    variables: serde_json::Value,
) -> Result<Rendered, TemplateError> {
    let subject = (channel == Channel::Email).then_some("Subject");
    template(channel, subject, body).render(&context("pt-BR", variables))
}

#[test]
fn money_per_locale_and_currency() {
    let cases = [
        ("pt-BR", 123456, "BRL", "R$ 1.234,56"),
        ("en-US", 123456, "BRL", "R$1,234.56"),
        ("es-ES", 123456, "BRL", "1.234,56 R$"),
        ("pt-BR", 1999, "USD", "US$ 19,99"),
        ("en-US", 1999, "USD", "$19.99"),
        ("en-US", 1500, "JPY", "¥1,500"),
        ("pt-BR", 1500, "JPY", "¥ 1.500"),
        ("es-ES", 250, "EUR", "2,50 €"),
    ];
    for (code, minor, currency, expected) in cases {
        let variables =
            serde_json::json!({"order": {"total": {"minor": minor, "currency": currency}}});
        let rendered = template(Channel::Sms, None, "{{ order.total | money }}")
            .render(&context(code, variables))
            .expect("renders");
        assert_eq!(rendered.text, expected, "{code} {minor} {currency}");
    }
}

#[test]
fn money_with_an_explicit_currency() {
    let rendered = render_body(
        Channel::Sms,
        "{{ 1234 | money('USD') }}",
        serde_json::json!({}),
    )
    .expect("renders");
    assert_eq!(rendered.text, "US$ 12,34");
}

#[test]
fn money_refuses_what_is_not_an_amount() {
    let cases = [
        serde_json::json!({"order": {"total": {"minor": "12.34", "currency": "BRL"}}}),
        serde_json::json!({"order": {"total": {"minor": 1234, "currency": "BRX"}}}),
        serde_json::json!({"order": {"total": {"minor": 1234}}}),
        serde_json::json!({"order": {"total": 1234}}),
    ];
    for variables in cases {
        let error = render_body(Channel::Sms, "{{ order.total | money }}", variables.clone())
            .expect_err("not an amount");
        assert_eq!(error.field, TemplateField::Body, "{variables}");
        assert_eq!(error.line, Some(1), "{variables}");
    }
}

#[test]
fn dates_in_the_company_time_zone() {
    // 02:30 UTC on the 3rd is still the 2nd in São Paulo (UTC-3).
    let instant = "2026-12-03T02:30:00Z";
    let cases = [
        ("pt-BR", "{{ at | datetime }}", "02/12/2026 23:30"),
        ("es-ES", "{{ at | datetime }}", "02/12/2026 23:30"),
        ("en-US", "{{ at | datetime }}", "12/02/2026 11:30 PM"),
        ("pt-BR", "{{ at | date }}", "02/12/2026"),
        ("en-US", "{{ at | date }}", "12/02/2026"),
        ("pt-BR", "{{ day | date }}", "16/12/2026"),
        ("en-US", "{{ day | date }}", "12/16/2026"),
    ];
    for (code, body, expected) in cases {
        let variables = serde_json::json!({"at": instant, "day": "2026-12-16"});
        let rendered = template(Channel::Sms, None, body)
            .render(&context(code, variables))
            .expect("renders");
        assert_eq!(rendered.text, expected, "{code} {body}");
    }
}

#[test]
fn dates_refuse_what_is_not_a_date() {
    for value in [
        serde_json::json!("yesterday"),
        serde_json::json!(1764633600),
    ] {
        let error = render_body(
            Channel::Sms,
            "\n{{ at | datetime }}",
            serde_json::json!({"at": value}),
        )
        .expect_err("not a date");
        assert_eq!(error.line, Some(2), "{value}");
    }
}

#[test]
fn email_bodies_escape_values_and_keep_the_template_markup() {
    let variables = serde_json::json!({"customer": {"name": "<script>alert('x')</script> & Co"}});
    let rendered =
        render_body(Channel::Email, "<p>Hi {{ customer.name }}</p>", variables).expect("renders");
    let html = rendered.html.expect("email has html");
    assert!(html.starts_with("<p>Hi &lt;script&gt;"), "{html}");
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("&amp; Co"), "{html}");
    assert_eq!(rendered.text, "Hi <script>alert('x')</script> & Co");
}

#[test]
fn plain_text_channels_do_not_escape() {
    let variables = serde_json::json!({"customer": {"name": "Tom & Jerry <3"}});
    for channel in [Channel::Whatsapp, Channel::Sms, Channel::InApp] {
        let rendered =
            render_body(channel, "Hi {{ customer.name }}", variables.clone()).expect("renders");
        assert_eq!(rendered.text, "Hi Tom & Jerry <3", "{channel:?}");
        assert_eq!(rendered.html, None, "{channel:?}");
    }
}

#[test]
fn email_text_part_follows_the_blocks() {
    let body = "<h1>Order</h1>\n<p>Line one<br>line two</p>\n\n\n<p>Bye</p>";
    let rendered = render_body(Channel::Email, body, serde_json::json!({})).expect("renders");
    assert_eq!(rendered.text, "Order\n\nLine one\nline two\n\nBye");
}

#[test]
fn email_text_part_keeps_link_addresses() {
    let variables = serde_json::json!({"url": "https://example.com/u?a=1&b=2"});
    let body =
        "<p><a href=\"{{ url }}\">Unsubscribe</a></p>\n<p><A HREF=\"{{ url }}\">{{ url }}</A></p>";
    let rendered = render_body(Channel::Email, body, variables).expect("renders");
    assert_eq!(
        rendered.text,
        "Unsubscribe (https://example.com/u?a=1&b=2)\n\nhttps://example.com/u?a=1&b=2"
    );
}

#[test]
fn subjects_are_one_line_and_bounded() {
    let variables = serde_json::json!({"name": "Maria\r\nBcc: someone@example.com"});
    let rendered = template(Channel::Email, Some("Hi {{ name }}"), "body")
        .render(&context("pt-BR", variables))
        .expect("renders");
    assert_eq!(
        rendered.subject.as_deref(),
        Some("Hi Maria Bcc: someone@example.com")
    );

    let long = serde_json::json!({"name": "x".repeat(SUBJECT_MAX_CHARS)});
    let error = template(Channel::Email, Some("Hi {{ name }}"), "body")
        .render(&context("pt-BR", long))
        .expect_err("too long");
    assert_eq!(error.field, TemplateField::Subject);
    assert!(error.message.contains("limit is 200"), "{}", error.message);

    let exact = serde_json::json!({"name": "x".repeat(SUBJECT_MAX_CHARS - 3)});
    template(Channel::Email, Some("Hi {{ name }}"), "body")
        .render(&context("pt-BR", exact))
        .expect("exactly the limit renders");
}

#[test]
fn channel_length_limits() {
    let cases = [
        (Channel::Whatsapp, 4096),
        (Channel::Sms, 1600),
        (Channel::InApp, 1000),
    ];
    for (channel, limit) in cases {
        let at_limit = serde_json::json!({"text": "é".repeat(limit)});
        render_body(channel, "{{ text }}", at_limit).expect("the limit itself fits");
        let over = serde_json::json!({"text": "é".repeat(limit + 1)});
        let error = render_body(channel, "{{ text }}", over).expect_err("over the limit");
        assert_eq!(error.field, TemplateField::Body, "{channel:?}");
        assert!(
            error.message.contains(&format!("limit is {limit}")),
            "{}",
            error.message
        );
    }
}

#[test]
fn fuel_stops_a_runaway_loop() {
    let letters = "a".repeat(1000);
    let body = format!(
        "{{% for a in '{letters}' %}}{{% for b in '{letters}' %}}{{% endfor %}}{{% endfor %}}"
    );
    let error = render_body(Channel::Sms, &body, serde_json::json!({})).expect_err("out of fuel");
    assert!(error.message.contains("too much work"), "{}", error.message);
}

#[test]
fn statements_other_than_if_and_for_are_refused_at_save_with_their_line() {
    for (statement, body) in [
        ("set", "{% set greeting = 'Olá' %}{{ greeting }}"),
        (
            "macro",
            "{% macro down(n) %}{{ down(n + 1) }}{% endmacro %}{{ down(0) }}",
        ),
        ("call", "{% call customer.name() %}x{% endcall %}"),
        ("with", "{% with x = 1 %}{{ x }}{% endwith %}"),
        ("filter", "{% filter upper %}oi{% endfilter %}"),
        (
            "autoescape",
            "{% autoescape false %}{{ customer.name }}{% endautoescape %}",
        ),
        ("include", "{% include 'other' %}"),
        ("import", "{% import 'other' as other %}"),
        ("from", "{% from 'other' import x %}"),
        ("extends", "{% extends 'base' %}"),
        ("block", "{% block content %}oi{% endblock %}"),
    ] {
        let body = format!("Oi {{{{ customer.name }}}}\n{body}");
        let error = template(Channel::Sms, None, &body)
            .validate(order_ready())
            .expect_err(&body);
        assert_eq!(error.field, TemplateField::Body, "{body}");
        assert_eq!(error.line, Some(2), "{body}: {error}");
        assert!(
            error.message.contains(&format!("`{{% {statement} %}}`")),
            "{body}: {error}"
        );
        render_body(Channel::Sms, &body, order_ready().sample()).expect_err(&body);
    }
}

#[test]
fn raw_text_conditions_and_loops_are_accepted() {
    let body = "{% raw %}{% set x = 1 %}{{ x * 2 }}{% endraw %}\n        {%- if order.status is defined and order.status != 'X' %} {{ order.number }}{% elif customer.name %}b{% else %}c{% endif %}\n        {% for letter in customer.name %}{{ loop.index }}{% else %}none{% endfor %}";
    template(Channel::Sms, None, body)
        .validate(order_ready())
        .expect("valid");
}

#[test]
fn repetition_operators_are_refused_at_save_with_their_line() {
    for body in [
        "Oi\n{{ 'x' * 100000000 }}",
        "Oi\n{{ customer.name * 1000 }}",
        "Oi\n{% for x in [1] * 100000000 %}{{ x }}{% endfor %}",
        "Oi\n{{ 10 ** 100 }}",
    ] {
        let error = template(Channel::Sms, None, body)
            .validate(order_ready())
            .expect_err(body);
        assert_eq!(error.line, Some(2), "{body}: {error}");
        assert!(error.message.contains("`*`"), "{body}: {error}");
    }
}

#[test]
fn a_render_writing_more_than_a_mebibyte_stops_there() {
    let long = "x".repeat(2000);
    let body = "{% for letter in text %}{{ text }}{% endfor %}";
    let error = template(Channel::Email, Some("s"), body)
        .render(&context("pt-BR", serde_json::json!({ "text": long })))
        .expect_err("over the cap");
    assert!(
        error.message.contains("more than 1 MiB"),
        "{}",
        error.message
    );
}

#[test]
fn only_the_offered_filters_tests_and_no_globals_exist() {
    let variables = serde_json::json!({"name": " ana maria ", "list": ["a", "b"], "n": 2.567});
    let body = "{{ name | trim | title }} {{ name | upper | trim }} {{ name | trim | capitalize }} \
        {{ list | join('-') }} {{ list | first }} {{ list | last }} {{ list | length }} \
        {{ n | round(1) }} {{ name | replace('ana', 'bia') | trim }} {{ missing | default('-') }} \
        {{ name | e | lower | trim }}{% if missing is undefined and name is defined and none is none %} ok{% endif %}";
    let rendered = render_body(Channel::Sms, body, variables.clone()).expect("renders");
    assert_eq!(
        rendered.text,
        "Ana Maria ANA MARIA Ana maria a-b a b 2 2.6 bia maria - ana maria ok"
    );
    for refused in [
        "{{ range(3) }}",
        "{{ dict(a=1) }}",
        "{{ debug() }}",
        "{{ name | safe }}",
        "{{ list | map('upper') | join }}",
        "{{ name | format }}",
        "{% if n is odd %}x{% endif %}",
    ] {
        render_body(Channel::Sms, refused, variables.clone()).expect_err(refused);
    }
}

#[test]
fn undefined_values_are_errors() {
    let error = render_body(
        Channel::Sms,
        "Hi\n{{ customer.name }}",
        serde_json::json!({"customer": {}}),
    )
    .expect_err("strict");
    assert_eq!(error.line, Some(2));
}

#[test]
fn validate_refuses_an_unknown_variable_with_its_line() {
    let cases = [
        (
            "Hi {{ customer.name }}\nYour {{ order.numbr }}",
            2,
            "order.numbr",
        ),
        (
            "{% if order.status == 'READY' %}\nok\n{% endif %}\n{{ payment.amount | money }}",
            4,
            "payment.amount",
        ),
        ("{{ secret }}", 1, "secret"),
        (
            "{% for x in [1] %}{{ x }}{% endfor %}\n\n{{ customer.phone }}",
            3,
            "customer.phone",
        ),
    ];
    for (body, line, path) in cases {
        let error = template(Channel::Sms, None, body)
            .validate(order_ready())
            .expect_err(body);
        assert_eq!(error.field, TemplateField::Body, "{body}");
        assert_eq!(error.line, Some(line), "{body}");
        assert!(
            error.message.contains(&format!("`{path}`")),
            "{}",
            error.message
        );
    }
}

#[test]
fn validate_refuses_a_syntax_error_with_its_line() {
    let cases = [
        (
            "Hi {{ customer.name }}\n{% if order.status %}\nno end",
            None,
            TemplateField::Body,
        ),
        ("line\n{{ customer.name", None, TemplateField::Body),
        (
            "ok",
            Some("fine\n{{ order.number }"),
            TemplateField::Subject,
        ),
    ];
    for (body, subject, field) in cases {
        let error = template(Channel::Email, Some(subject.unwrap_or("Subject")), body)
            .validate(order_ready())
            .expect_err(body);
        assert_eq!(error.field, field, "{body}");
        assert!(error.line.is_some_and(|line| line >= 2), "{body}: {error}");
    }
}

#[test]
fn validate_accepts_the_purpose_variables_filters_and_loops() {
    let body = "Olá, {{ customer.name | upper }}!\n\
        {% for n in [1, 2] %}{{ loop.index }}{% endfor %}\n\
        {{ order.total | money }} {{ order.status | lower }}";
    template(Channel::Whatsapp, None, body)
        .validate(order_ready())
        .expect("valid");
}

#[test]
fn validate_checks_the_subject_per_channel() {
    let email = template(Channel::Email, None, "body")
        .validate(order_ready())
        .expect_err("no subject");
    assert_eq!(email.field, TemplateField::Subject);
    let sms = template(Channel::Sms, Some("title"), "body")
        .validate(order_ready())
        .expect_err("sms subject");
    assert_eq!(sms.field, TemplateField::Subject);
    template(Channel::InApp, Some("{{ order.number }}"), "body")
        .validate(order_ready())
        .expect("an in-app title");
    template(Channel::InApp, None, "body")
        .validate(order_ready())
        .expect("in-app without a title");
}

#[test]
fn every_purpose_has_a_valid_default_per_channel_and_locale() {
    for purpose in PURPOSES {
        for channel in Channel::ALL {
            for code in Locale::SUPPORTED {
                let default =
                    system_default(purpose.name, channel, locale(code)).unwrap_or_else(|| {
                        panic!("no default for {} {channel:?} {code}", purpose.name)
                    });
                assert_eq!(default.channel, channel);
                default
                    .validate(purpose)
                    .unwrap_or_else(|error| panic!("{} {channel:?} {code}: {error}", purpose.name));
                let rendered = default
                    .render(&context(code, purpose.sample()))
                    .expect("renders");
                assert!(!rendered.text.is_empty());
            }
        }
    }
    assert_eq!(
        DEFAULTS.len(),
        PURPOSES.len() * Channel::ALL.len() * Locale::SUPPORTED.len()
    );
}

#[test]
fn a_default_renders_with_the_locale_formats() {
    let purpose = order_ready();
    let english =
        system_default("order_ready", Channel::Whatsapp, locale("en-US")).expect("default");
    let rendered = english
        .render(&context("en-US", purpose.sample()))
        .expect("renders");
    assert_eq!(
        rendered.text,
        "Hi Maria Souza! Your order *1042* at Bicicletaria Aro 29 is ready. 🎉\nTotal: R$159.90"
    );
    assert!(system_default("no_such_purpose", Channel::Sms, locale("pt-BR")).is_none());
}

#[test]
fn locale_chain_falls_back_to_the_company_then_pt_br() {
    let cases = [
        (Some("es-ES"), "en-US", vec!["es-ES", "en-US", "pt-BR"]),
        (None, "en-US", vec!["en-US", "pt-BR"]),
        (Some("pt-BR"), "pt-BR", vec!["pt-BR"]),
        (Some("en-US"), "pt-BR", vec!["en-US", "pt-BR"]),
        (Some("en-US"), "en-US", vec!["en-US", "pt-BR"]),
    ];
    for (requested, company, expected) in cases {
        let chain: Vec<&str> = locale_chain(requested.map(locale), locale(company))
            .into_iter()
            .map(Locale::as_str)
            .collect();
        assert_eq!(chain, expected, "{requested:?} {company}");
    }
}

#[test]
fn line_of_matches_whole_names() {
    let source = "{{ order.numbers }}\n{{ xorder.number }}\n{{ order.number }}";
    assert_eq!(line_of(source, "order.number"), Some(3));
    assert_eq!(line_of(source, "customer"), None);
}
