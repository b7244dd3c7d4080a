//! Chat templates rendered like Hugging Face transformers' `apply_chat_template`: Jinja with
//! `trim_blocks` and `lstrip_blocks`, Python string methods (`content.split(...)`), a
//! `raise_exception` function, `tojson` as Python's `json.dumps`, and the special tokens
//! (`bos_token`, `eos_token`, …) as variables.

use minijinja::{value::Kwargs, Environment, Error, ErrorKind, Value};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        ChatMessage { role: role.to_string(), content: content.into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("chat template does not compile: {0}")]
    Compile(String),
    #[error("chat template failed: {0}")]
    Render(String),
}

pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, message))
        });
        env.add_filter("tojson", tojson);
        env.add_template_owned("chat", source.to_string()).map_err(|e| TemplateError::Compile(e.to_string()))?;
        Ok(ChatTemplate { env, bos_token: bos_token.to_string(), eos_token: eos_token.to_string() })
    }

    /// The prompt text for `messages`; with `add_generation_prompt` it ends where the assistant's
    /// reply begins.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String, TemplateError> {
        let template = self.env.get_template("chat").expect("added in new()");
        template
            .render(minijinja::context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            })
            .map_err(|e| TemplateError::Render(render_error(&e)))
    }
}

fn render_error(err: &Error) -> String {
    match err.kind() {
        // raise_exception's message is the template author's, show it as is.
        ErrorKind::InvalidOperation => err.detail().unwrap_or("invalid operation").to_string(),
        _ => err.to_string(),
    }
}

/// `tojson` as transformers defines it: `json.dumps(value, ensure_ascii=False)` with Python's
/// separators (`", "` and `": "`), or indented when `indent=N` is given.
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let json =
        serde_json::to_value(&value).map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let mut out = String::new();
    write_py_json(&json, indent, 0, &mut out);
    Ok(Value::from_safe_string(out))
}

fn write_py_json(v: &serde_json::Value, indent: Option<usize>, depth: usize, out: &mut String) {
    use serde_json::Value as J;
    let (open_sep, item_sep, close_sep) = match indent {
        Some(n) => (
            format!("\n{}", " ".repeat(n * (depth + 1))),
            format!(",\n{}", " ".repeat(n * (depth + 1))),
            format!("\n{}", " ".repeat(n * depth)),
        ),
        None => (String::new(), ", ".to_string(), String::new()),
    };
    match v {
        J::Array(items) if !items.is_empty() => {
            out.push('[');
            out.push_str(&open_sep);
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&item_sep);
                }
                write_py_json(item, indent, depth + 1, out);
            }
            out.push_str(&close_sep);
            out.push(']');
        }
        J::Object(map) if !map.is_empty() => {
            out.push('{');
            out.push_str(&open_sep);
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(&item_sep);
                }
                out.push_str(&serde_json::to_string(k).expect("string"));
                out.push_str(": ");
                write_py_json(item, indent, depth + 1, out);
            }
            out.push_str(&close_sep);
            out.push('}');
        }
        other => out.push_str(&serde_json::to_string(other).expect("json")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOS: &str = "<｜begin▁of▁sentence｜>";
    const EOS: &str = "<｜end▁of▁sentence｜>";

    /// The DeepSeek-R1-Distill-Qwen template, as shipped in the fixture's tokenizer_config.json.
    fn deepseek() -> ChatTemplate {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/llm/tiny-deepseek-r1-distill-qwen-int4-cw-ov/tokenizer_config.json"
        );
        let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        ChatTemplate::new(config["chat_template"].as_str().unwrap(), BOS, EOS).unwrap()
    }

    fn msgs(pairs: &[(&str, &str)]) -> Vec<ChatMessage> {
        pairs.iter().map(|(r, c)| ChatMessage::new(r, *c)).collect()
    }

    #[test]
    fn deepseek_table() {
        let t = deepseek();
        type Case<'a> = (&'a [(&'a str, &'a str)], bool, String);
        let cases: &[Case] = &[
            (&[("user", "Hello")], true, format!("{BOS}<｜User｜>Hello<｜Assistant｜><think>\n")),
            (&[("user", "Hello")], false, format!("{BOS}<｜User｜>Hello")),
            // The system prompt goes first, right after BOS, wherever it appears.
            (
                &[("user", "Hi"), ("system", "Be brief.")],
                true,
                format!("{BOS}Be brief.<｜User｜>Hi<｜Assistant｜><think>\n"),
            ),
            // Earlier reasoning (before </think>) is dropped from assistant turns.
            (
                &[("user", "Hi"), ("assistant", "They greet.\n</think>\n\nHello!"), ("user", "Draw a cat")],
                true,
                format!("{BOS}<｜User｜>Hi<｜Assistant｜>\n\nHello!{EOS}<｜User｜>Draw a cat<｜Assistant｜><think>\n"),
            ),
            // An assistant turn without reasoning is kept whole.
            (&[("user", "a"), ("assistant", "b")], false, format!("{BOS}<｜User｜>a<｜Assistant｜>b{EOS}")),
        ];
        for (messages, gen, expected) in cases {
            assert_eq!(&t.render(&msgs(messages), *gen).unwrap(), expected, "{messages:?}");
        }
    }

    #[test]
    fn raise_exception_surfaces_the_template_message() {
        let t = ChatTemplate::new(
            "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}ok",
            "",
            "",
        )
        .unwrap();
        assert_eq!(t.render(&msgs(&[("user", "x")]), false).unwrap(), "ok");
        let err = t.render(&msgs(&[("assistant", "x")]), false).unwrap_err().to_string();
        assert_eq!(err, "chat template failed: first must be user");
    }

    #[test]
    fn trim_and_lstrip_blocks_and_loops_behave_like_transformers() {
        let src = "{% for m in messages %}\n    {% if loop.first %}[{{ m.content|upper }}]{% else %}({{ m.content }}){% endif %}\n{% endfor %}";
        let t = ChatTemplate::new(src, "", "").unwrap();
        assert_eq!(t.render(&msgs(&[("user", "a"), ("user", "b")]), false).unwrap(), "[A](b)");
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        let t =
            ChatTemplate::new("{{ {'a': [1, 'é<>'], 'b': none}|tojson }}|{{ [1]|tojson(indent=2) }}", "", "").unwrap();
        assert_eq!(t.render(&[], false).unwrap(), "{\"a\": [1, \"é<>\"], \"b\": null}|[\n  1\n]");
    }

    #[test]
    fn a_broken_template_is_a_compile_error() {
        assert!(matches!(ChatTemplate::new("{% for %}", "", ""), Err(TemplateError::Compile(_))));
    }
}
