//! A chat engine that echoes: a short reasoning part, then the user's message back, and an
//! `image_prompt` block when the message asks for a picture. Same input, same output.

use crate::{
    inference::{
        engine::ChatEngine,
        llm::{
            ChatMessage, Completion, FinishReason, GenerateRequest, GenerationEvent, GenerationHandle, Part, Prompt,
        },
        InferenceError,
    },
    telemetry::chat::{Ended, ReplyClock},
};
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};
use tokio::sync::mpsc::unbounded_channel;

#[derive(Clone, Default)]
pub struct MockChat {
    /// Time each token takes (0: as fast as the channel goes), to watch streaming and test Stop.
    pub token_time: std::time::Duration,
}

/// Whether a message asks for a picture (the mock's stand-in for the model's judgement).
pub fn wants_picture(message: &str) -> bool {
    let lower = message.to_lowercase();
    ["draw", "picture", "image", "paint", "photo", "illustrat", "sketch"].iter().any(|w| lower.contains(w))
}

/// The reply's two parts for the conversation's last user message.
fn reply_for(messages: &[ChatMessage]) -> (String, String) {
    let last = messages.iter().rev().find(|m| m.role == "user").map_or("", |m| m.content.trim());
    let reasoning = format!("The user wrote {} words. Echo them back.", last.split_whitespace().count());
    let mut answer = format!("You said: {last}");
    if wants_picture(last) {
        answer.push_str(&format!("\n\n<image_prompt>{last}</image_prompt>"));
    }
    (reasoning, answer)
}

/// Words with their trailing space: the mock's tokens.
fn pieces(text: &str) -> Vec<String> {
    text.split_inclusive(' ').map(str::to_string).collect()
}

impl ChatEngine for MockChat {
    fn generate(&self, request: GenerateRequest) -> Result<GenerationHandle, InferenceError> {
        let (tx, rx) = unbounded_channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let (messages, prompt_tokens) = match &request.prompt {
            Prompt::Messages(m) => (m.clone(), m.iter().map(|m| pieces(&m.content).len()).sum()),
            Prompt::Ids(ids) => (Vec::new(), ids.len()),
        };
        let params = request.params;
        let token_time = self.token_time;
        let submitted = Instant::now();
        tokio::spawn(async move {
            let started = Instant::now();
            // The mock starts at once: its replies wait for nothing.
            let mut clock = ReplyClock::admitted(submitted);
            clock.begin();
            let _ = tx.send(GenerationEvent::Started { prompt_tokens, reused_tokens: 0, dropped_messages: 0 });
            let (reasoning_text, answer_text) = reply_for(&messages);
            let mut out = Completion {
                token_ids: Vec::new(),
                text: String::new(),
                reasoning: String::new(),
                answer: String::new(),
                finish_reason: FinishReason::Eos,
                prompt_tokens,
                reused_tokens: 0,
                completion_tokens: 0,
                dropped_messages: 0,
                seed: params.sampling.seed.unwrap_or(0),
                provider: None,
                ttft_ms: 0.0,
                total_ms: 0.0,
            };
            let stream = pieces(&reasoning_text)
                .into_iter()
                .map(|p| (Part::Reasoning, p))
                .chain(pieces(&answer_text).into_iter().map(|p| (Part::Answer, p)));
            for (part, text) in stream {
                if flag.load(Ordering::Relaxed) || tx.is_closed() {
                    out.finish_reason = FinishReason::Cancelled;
                    break;
                }
                if out.completion_tokens >= params.max_new_tokens {
                    out.finish_reason = FinishReason::Length;
                    break;
                }
                if let Some(stop) = params.stop.iter().find(|s| part == Part::Answer && text.contains(s.as_str())) {
                    let kept = &text[..text.find(stop.as_str()).unwrap_or(0)];
                    out.answer.push_str(kept);
                    let _ = tx.send(GenerationEvent::Delta { part, text: kept.to_string() });
                    out.finish_reason = FinishReason::Stop;
                    break;
                }
                if out.completion_tokens == 0 {
                    out.ttft_ms = started.elapsed().as_secs_f64() * 1000.0;
                }
                clock.token();
                out.completion_tokens += 1;
                out.token_ids.push(out.completion_tokens as u32);
                match part {
                    Part::Reasoning => out.reasoning.push_str(&text),
                    Part::Answer => out.answer.push_str(&text),
                }
                let _ = tx.send(GenerationEvent::Delta { part, text });
                if token_time.is_zero() {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(token_time).await;
                }
            }
            out.reasoning = out.reasoning.trim_end().to_string();
            out.text = format!("{}\n</think>\n\n{}", out.reasoning, out.answer);
            out.total_ms = started.elapsed().as_secs_f64() * 1000.0;
            clock.end(Ended {
                reason: out.finish_reason.metric_label(),
                prompt_tokens,
                reused_tokens: 0,
                generated_tokens: out.completion_tokens,
            });
            let _ = tx.send(GenerationEvent::Done(out));
        });
        Ok(GenerationHandle::new(rx, cancel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::llm::GenerationParams;

    fn ask(text: &str, params: GenerationParams) -> GenerateRequest {
        GenerateRequest { conversation: None, prompt: Prompt::Messages(vec![ChatMessage::new("user", text)]), params }
    }

    #[tokio::test]
    async fn echoes_with_reasoning_and_asks_for_pictures() {
        let c = MockChat::default()
            .generate(ask("draw a red fox", Default::default()))
            .unwrap()
            .completion()
            .await
            .unwrap();
        assert_eq!(c.reasoning, "The user wrote 4 words. Echo them back.");
        assert_eq!(c.answer, "You said: draw a red fox\n\n<image_prompt>draw a red fox</image_prompt>");
        assert_eq!(c.finish_reason, FinishReason::Eos);
        assert_eq!(c.completion_tokens, 8 + 9);
        let c = MockChat::default().generate(ask("hello", Default::default())).unwrap().completion().await.unwrap();
        assert_eq!(c.answer, "You said: hello");
    }

    #[tokio::test]
    async fn honours_max_tokens_and_stop() {
        let params = GenerationParams { max_new_tokens: 3, ..Default::default() };
        let c = MockChat::default().generate(ask("hello", params)).unwrap().completion().await.unwrap();
        assert_eq!((c.finish_reason, c.completion_tokens, c.answer.as_str()), (FinishReason::Length, 3, ""));
        let params = GenerationParams { stop: vec!["said".into()], ..Default::default() };
        let c = MockChat::default().generate(ask("hello", params)).unwrap().completion().await.unwrap();
        assert_eq!((c.finish_reason, c.answer.as_str()), (FinishReason::Stop, "You "));
    }

    #[test]
    fn picture_words() {
        assert!(wants_picture("Could you PAINT me a boat?"));
        assert!(!wants_picture("What is the capital of France?"));
    }
}
