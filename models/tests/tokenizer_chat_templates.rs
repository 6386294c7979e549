//! Chat templates rendered by oxrl against the strings HF transformers produces for the same
//! template and messages. Expected strings were produced with transformers 5.24.0
//! (`transformers.utils.chat_template_utils.render_jinja_template`, jinja2 3.1.6) with
//! `bos_token="<|begin_of_text|>"`, `eos_token="<|im_end|>"`; assistant spans are HF's
//! `return_assistant_tokens_mask` character indices converted to byte offsets.
//! Templates: Qwen2.5-Instruct (ChatML with tools branch), Meta-Llama-3-Instruct, SmolLM2-Instruct
//! (from its GGUF), oxrl's tiny ChatML with `{% generation %}`, a plain-tag `{% generation %}`
//! template, and one exercising Python string methods and `tojson`.

use oxrl_models::tokenizer::{ChatMessage, ChatTemplate};
use std::collections::BTreeMap;

fn template(src: &str) -> ChatTemplate {
    let mut sp = BTreeMap::new();
    sp.insert("bos_token".to_string(), "<|begin_of_text|>".to_string());
    sp.insert("eos_token".to_string(), "<|im_end|>".to_string());
    ChatTemplate::new(src, sp).unwrap()
}

fn msgs(list: &[(&str, &str)]) -> Vec<ChatMessage> {
    list.iter().map(|(r, c)| ChatMessage::new(*r, *c)).collect()
}

const MSGS_BASIC: &[(&str, &str)] = &[
    ("user", "Hi there!"),
    ("assistant", "Hello! How can I help?"),
    ("user", "What is 2+2?"),
];

const MSGS_SYSTEM: &[(&str, &str)] = &[
    ("system", "You are terse."),
    ("user", "  Héllo wörld 世界 🙂\nsecond  line  "),
    ("assistant", " Four.  "),
];

const T_QWEN25: &str = "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n        {{- messages[0]['content'] }}\n    {%- else %}\n        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n    {%- for tool in tools %}\n        {{- \"\\n\" }}\n        {{- tool | tojson }}\n    {%- endfor %}\n    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n{%- else %}\n    {%- if messages[0]['role'] == 'system' %}\n        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n{%- for message in messages %}\n    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or (message.role == \"assistant\" and not message.tool_calls) %}\n        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n    {%- elif message.role == \"assistant\" %}\n        {{- '<|im_start|>' + message.role }}\n        {%- if message.content %}\n            {{- '\\n' + message.content }}\n        {%- endif %}\n        {%- for tool_call in message.tool_calls %}\n            {%- if tool_call.function is defined %}\n                {%- set tool_call = tool_call.function %}\n            {%- endif %}\n            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n            {{- tool_call.name }}\n            {{- '\", \"arguments\": ' }}\n            {{- tool_call.arguments | tojson }}\n            {{- '}\\n</tool_call>' }}\n        {%- endfor %}\n        {{- '<|im_end|>\\n' }}\n    {%- elif message.role == \"tool\" %}\n        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n            {{- '<|im_start|>user' }}\n        {%- endif %}\n        {{- '\\n<tool_response>\\n' }}\n        {{- message.content }}\n        {{- '\\n</tool_response>' }}\n        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n";

const T_LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

const T_SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const T_TINY_CHATML: &str = "{%- for message in messages %}\n    {{- '<|im_start|>' + message['role'] + '\\n' }}\n    {%- if message['role'] == 'assistant' %}\n        {%- generation %}\n        {{- message['content'] + '<|im_end|>' }}\n        {%- endgeneration %}\n        {{- '\\n' }}\n    {%- else %}\n        {{- message['content'] + '<|im_end|>' + '\\n' }}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n";

const T_GEN_PLAIN: &str = "{% for message in messages %}\n{% if message.role == 'assistant' %}\n<|assistant|>\n{% generation %}\n{{ message.content.strip() }}{{ eos_token }}\n{% endgeneration %}\n{% else %}\n<|{{ message.role }}|>\n{{ message.content.strip().replace('  ', ' ') }}\n{% endif %}\n{% endfor %}\n{% if add_generation_prompt %}\n<|assistant|>\n{% endif %}\n";

const T_PYCOMPAT: &str = "{%- for m in messages -%}\n{{ m.role.upper() }}:{{ m.content.split()|join('|') }};{{ m.content.startswith('Hi') }};{{ m.content.lstrip().title() }};{{ m.content.count('o') }}\n{% endfor -%}\n{{ messages | tojson }}\n{{ messages[0] | tojson(indent=2) }}\n{{ {\"b\": 1.5, \"a\": [1, 2.0, none, true], \"c\": \"é\\\"\\n<>&\"} | tojson(sort_keys=true) }}\n{{ {\"x\": 1e-7, \"y\": 1e20, \"z\": 0.1} | tojson(ensure_ascii=true) }}\n{{ \"ü🙂\" | tojson(ensure_ascii=true) }}\n";

#[test]
fn renders_like_transformers_qwen25() {
    let t = template(T_QWEN25);
    assert_eq!(t.render(&msgs(MSGS_BASIC), false).unwrap(), "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n");
    assert_eq!(t.render(&msgs(MSGS_BASIC), true).unwrap(), "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n");
    let (text, spans) = t.render_with_assistant_mask(&msgs(MSGS_BASIC)).unwrap();
    assert_eq!(text, "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n");
    assert_eq!(spans, Vec::<(usize, usize)>::new());
    assert_eq!(t.render(&msgs(MSGS_SYSTEM), false).unwrap(), "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\n  Héllo wörld 世界 🙂\nsecond  line  <|im_end|>\n<|im_start|>assistant\n Four.  <|im_end|>\n");
    assert_eq!(t.render(&msgs(MSGS_SYSTEM), true).unwrap(), "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\n  Héllo wörld 世界 🙂\nsecond  line  <|im_end|>\n<|im_start|>assistant\n Four.  <|im_end|>\n<|im_start|>assistant\n");
    let (text, spans) = t.render_with_assistant_mask(&msgs(MSGS_SYSTEM)).unwrap();
    assert_eq!(text, "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\n  Héllo wörld 世界 🙂\nsecond  line  <|im_end|>\n<|im_start|>assistant\n Four.  <|im_end|>\n");
    assert_eq!(spans, Vec::<(usize, usize)>::new());
}

#[test]
fn renders_like_transformers_llama3() {
    let t = template(T_LLAMA3);
    assert_eq!(t.render(&msgs(MSGS_BASIC), false).unwrap(), "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello! How can I help?<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>");
    assert_eq!(t.render(&msgs(MSGS_BASIC), true).unwrap(), "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello! How can I help?<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
    let (text, spans) = t.render_with_assistant_mask(&msgs(MSGS_BASIC)).unwrap();
    assert_eq!(text, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello! How can I help?<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>");
    assert_eq!(spans, Vec::<(usize, usize)>::new());
    assert_eq!(t.render(&msgs(MSGS_SYSTEM), false).unwrap(), "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHéllo wörld 世界 🙂\nsecond  line<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nFour.<|eot_id|>");
    assert_eq!(t.render(&msgs(MSGS_SYSTEM), true).unwrap(), "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHéllo wörld 世界 🙂\nsecond  line<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nFour.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
    let (text, spans) = t.render_with_assistant_mask(&msgs(MSGS_SYSTEM)).unwrap();
    assert_eq!(text, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHéllo wörld 世界 🙂\nsecond  line<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nFour.<|eot_id|>");
    assert_eq!(spans, Vec::<(usize, usize)>::new());
}

#[test]
fn renders_like_transformers_smollm2() {
    let t = template(T_SMOLLM2);
    assert_eq!(t.render(&msgs(MSGS_BASIC), false).unwrap(), "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n");
    assert_eq!(t.render(&msgs(MSGS_BASIC), true).unwrap(), "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n");
    let (text, spans) = t.render_with_assistant_mask(&msgs(MSGS_BASIC)).unwrap();
    assert_eq!(text, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n");
    assert_eq!(spans, Vec::<(usize, usize)>::new());
    assert_eq!(t.render(&msgs(MSGS_SYSTEM), false).unwrap(), "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\n  Héllo wörld 世界 🙂\nsecond  line  <|im_end|>\n<|im_start|>assistant\n Four.  <|im_end|>\n");
    assert_eq!(t.render(&msgs(MSGS_SYSTEM), true).unwrap(), "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\n  Héllo wörld 世界 🙂\nsecond  line  <|im_end|>\n<|im_start|>assistant\n Four.  <|im_end|>\n<|im_start|>assistant\n");
    let (text, spans) = t.render_with_assistant_mask(&msgs(MSGS_SYSTEM)).unwrap();
    assert_eq!(text, "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\n  Héllo wörld 世界 🙂\nsecond  line  <|im_end|>\n<|im_start|>assistant\n Four.  <|im_end|>\n");
    assert_eq!(spans, Vec::<(usize, usize)>::new());
}

#[test]
fn renders_like_transformers_tiny_chatml() {
    let t = template(T_TINY_CHATML);
    assert_eq!(t.render(&msgs(MSGS_BASIC), false).unwrap(), "<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n");
    assert_eq!(t.render(&msgs(MSGS_BASIC), true).unwrap(), "<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n");
    let (text, spans) = t.render_with_assistant_mask(&msgs(MSGS_BASIC)).unwrap();
    assert_eq!(text, "<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n");
    assert_eq!(spans, vec![(59, 91)]);
    assert_eq!(t.render(&msgs(MSGS_SYSTEM), false).unwrap(), "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\n  Héllo wörld 世界 🙂\nsecond  line  <|im_end|>\n<|im_start|>assistant\n Four.  <|im_end|>\n");
    assert_eq!(t.render(&msgs(MSGS_SYSTEM), true).unwrap(), "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\n  Héllo wörld 世界 🙂\nsecond  line  <|im_end|>\n<|im_start|>assistant\n Four.  <|im_end|>\n<|im_start|>assistant\n");
    let (text, spans) = t.render_with_assistant_mask(&msgs(MSGS_SYSTEM)).unwrap();
    assert_eq!(text, "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\n  Héllo wörld 世界 🙂\nsecond  line  <|im_end|>\n<|im_start|>assistant\n Four.  <|im_end|>\n");
    assert_eq!(spans, vec![(136, 154)]);
}

#[test]
fn renders_like_transformers_gen_plain() {
    let t = template(T_GEN_PLAIN);
    assert_eq!(t.render(&msgs(MSGS_BASIC), false).unwrap(), "<|user|>\nHi there!\n<|assistant|>\nHello! How can I help?<|im_end|>\n<|user|>\nWhat is 2+2?\n");
    assert_eq!(t.render(&msgs(MSGS_BASIC), true).unwrap(), "<|user|>\nHi there!\n<|assistant|>\nHello! How can I help?<|im_end|>\n<|user|>\nWhat is 2+2?\n<|assistant|>\n");
    let (text, spans) = t.render_with_assistant_mask(&msgs(MSGS_BASIC)).unwrap();
    assert_eq!(text, "<|user|>\nHi there!\n<|assistant|>\nHello! How can I help?<|im_end|>\n<|user|>\nWhat is 2+2?\n");
    assert_eq!(spans, vec![(33, 66)]);
    assert_eq!(t.render(&msgs(MSGS_SYSTEM), false).unwrap(), "<|system|>\nYou are terse.\n<|user|>\nHéllo wörld 世界 🙂\nsecond line\n<|assistant|>\nFour.<|im_end|>\n");
    assert_eq!(t.render(&msgs(MSGS_SYSTEM), true).unwrap(), "<|system|>\nYou are terse.\n<|user|>\nHéllo wörld 世界 🙂\nsecond line\n<|assistant|>\nFour.<|im_end|>\n<|assistant|>\n");
    let (text, spans) = t.render_with_assistant_mask(&msgs(MSGS_SYSTEM)).unwrap();
    assert_eq!(text, "<|system|>\nYou are terse.\n<|user|>\nHéllo wörld 世界 🙂\nsecond line\n<|assistant|>\nFour.<|im_end|>\n");
    assert_eq!(spans, vec![(87, 103)]);
}

#[test]
fn renders_like_transformers_pycompat() {
    let t = template(T_PYCOMPAT);
    assert_eq!(t.render(&msgs(MSGS_BASIC), false).unwrap(), "USER:Hi|there!;True;Hi There!;0\nASSISTANT:Hello!|How|can|I|help?;False;Hello! How Can I Help?;2\nUSER:What|is|2+2?;False;What Is 2+2?;0\n[{\"role\": \"user\", \"content\": \"Hi there!\"}, {\"role\": \"assistant\", \"content\": \"Hello! How can I help?\"}, {\"role\": \"user\", \"content\": \"What is 2+2?\"}]\n{\n  \"role\": \"user\",\n  \"content\": \"Hi there!\"\n}\n{\"a\": [1, 2.0, null, true], \"b\": 1.5, \"c\": \"é\\\"\\n<>&\"}\n{\"x\": 1e-07, \"y\": 1e+20, \"z\": 0.1}\n\"\\u00fc\\ud83d\\ude42\"");
    assert_eq!(t.render(&msgs(MSGS_BASIC), true).unwrap(), "USER:Hi|there!;True;Hi There!;0\nASSISTANT:Hello!|How|can|I|help?;False;Hello! How Can I Help?;2\nUSER:What|is|2+2?;False;What Is 2+2?;0\n[{\"role\": \"user\", \"content\": \"Hi there!\"}, {\"role\": \"assistant\", \"content\": \"Hello! How can I help?\"}, {\"role\": \"user\", \"content\": \"What is 2+2?\"}]\n{\n  \"role\": \"user\",\n  \"content\": \"Hi there!\"\n}\n{\"a\": [1, 2.0, null, true], \"b\": 1.5, \"c\": \"é\\\"\\n<>&\"}\n{\"x\": 1e-07, \"y\": 1e+20, \"z\": 0.1}\n\"\\u00fc\\ud83d\\ude42\"");
    let (text, spans) = t.render_with_assistant_mask(&msgs(MSGS_BASIC)).unwrap();
    assert_eq!(text, "USER:Hi|there!;True;Hi There!;0\nASSISTANT:Hello!|How|can|I|help?;False;Hello! How Can I Help?;2\nUSER:What|is|2+2?;False;What Is 2+2?;0\n[{\"role\": \"user\", \"content\": \"Hi there!\"}, {\"role\": \"assistant\", \"content\": \"Hello! How can I help?\"}, {\"role\": \"user\", \"content\": \"What is 2+2?\"}]\n{\n  \"role\": \"user\",\n  \"content\": \"Hi there!\"\n}\n{\"a\": [1, 2.0, null, true], \"b\": 1.5, \"c\": \"é\\\"\\n<>&\"}\n{\"x\": 1e-07, \"y\": 1e+20, \"z\": 0.1}\n\"\\u00fc\\ud83d\\ude42\"");
    assert_eq!(spans, Vec::<(usize, usize)>::new());
    assert_eq!(t.render(&msgs(MSGS_SYSTEM), false).unwrap(), "SYSTEM:You|are|terse.;False;You Are Terse.;1\nUSER:Héllo|wörld|世界|🙂|second|line;False;Héllo Wörld 世界 🙂\nSecond  Line  ;2\nASSISTANT:Four.;False;Four.  ;1\n[{\"role\": \"system\", \"content\": \"You are terse.\"}, {\"role\": \"user\", \"content\": \"  Héllo wörld 世界 🙂\\nsecond  line  \"}, {\"role\": \"assistant\", \"content\": \" Four.  \"}]\n{\n  \"role\": \"system\",\n  \"content\": \"You are terse.\"\n}\n{\"a\": [1, 2.0, null, true], \"b\": 1.5, \"c\": \"é\\\"\\n<>&\"}\n{\"x\": 1e-07, \"y\": 1e+20, \"z\": 0.1}\n\"\\u00fc\\ud83d\\ude42\"");
    assert_eq!(t.render(&msgs(MSGS_SYSTEM), true).unwrap(), "SYSTEM:You|are|terse.;False;You Are Terse.;1\nUSER:Héllo|wörld|世界|🙂|second|line;False;Héllo Wörld 世界 🙂\nSecond  Line  ;2\nASSISTANT:Four.;False;Four.  ;1\n[{\"role\": \"system\", \"content\": \"You are terse.\"}, {\"role\": \"user\", \"content\": \"  Héllo wörld 世界 🙂\\nsecond  line  \"}, {\"role\": \"assistant\", \"content\": \" Four.  \"}]\n{\n  \"role\": \"system\",\n  \"content\": \"You are terse.\"\n}\n{\"a\": [1, 2.0, null, true], \"b\": 1.5, \"c\": \"é\\\"\\n<>&\"}\n{\"x\": 1e-07, \"y\": 1e+20, \"z\": 0.1}\n\"\\u00fc\\ud83d\\ude42\"");
    let (text, spans) = t.render_with_assistant_mask(&msgs(MSGS_SYSTEM)).unwrap();
    assert_eq!(text, "SYSTEM:You|are|terse.;False;You Are Terse.;1\nUSER:Héllo|wörld|世界|🙂|second|line;False;Héllo Wörld 世界 🙂\nSecond  Line  ;2\nASSISTANT:Four.;False;Four.  ;1\n[{\"role\": \"system\", \"content\": \"You are terse.\"}, {\"role\": \"user\", \"content\": \"  Héllo wörld 世界 🙂\\nsecond  line  \"}, {\"role\": \"assistant\", \"content\": \" Four.  \"}]\n{\n  \"role\": \"system\",\n  \"content\": \"You are terse.\"\n}\n{\"a\": [1, 2.0, null, true], \"b\": 1.5, \"c\": \"é\\\"\\n<>&\"}\n{\"x\": 1e-07, \"y\": 1e+20, \"z\": 0.1}\n\"\\u00fc\\ud83d\\ude42\"");
    assert_eq!(spans, Vec::<(usize, usize)>::new());
}
