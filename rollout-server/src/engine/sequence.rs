//! Per-request and per-sample state: generated tokens and logprobs, incremental detokenisation,
//! stop conditions and the events a new token produces.

use super::sampler::Sampled;
use super::TokenDecoder;
use crate::types::{
    Completion, FinishReason, PromptTokenLogprob, RolloutResponse, SamplingParams, StopReason,
    StreamEvent, TokenLogprob, Usage,
};
use oxrl_models::SeqCache;
use rand_chacha::ChaCha8Rng;

/// Prompt tokens placed before the completion when detokenising, so that the first generated
/// token gets its leading space right (SentencePiece-style tokenizers).
const DETOK_CONTEXT: usize = 4;

/// Incremental detokeniser: decodes a sliding window and emits only text that is complete (no
/// trailing U+FFFD from a partial UTF-8 sequence).
#[derive(Debug, Clone)]
pub(crate) struct IncrementalDetok {
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
}

impl IncrementalDetok {
    /// A detokeniser primed with the tail of the prompt.
    pub fn new(prompt: &[u32]) -> Self {
        let tail = &prompt[prompt.len().saturating_sub(DETOK_CONTEXT)..];
        Self {
            ids: tail.to_vec(),
            prefix_offset: 0,
            read_offset: tail.len(),
        }
    }

    /// Adds a token and returns the newly completed text (possibly empty).
    pub fn push(&mut self, id: u32, dec: &dyn TokenDecoder) -> String {
        self.ids.push(id);
        let prefix = dec
            .decode(&self.ids[self.prefix_offset..self.read_offset])
            .unwrap_or_default();
        let full = dec
            .decode(&self.ids[self.prefix_offset..])
            .unwrap_or_default();
        if full.len() > prefix.len() && !full.ends_with('\u{FFFD}') {
            let delta = match full.get(prefix.len()..) {
                Some(d) if full.starts_with(&prefix) => d.to_string(),
                // The window re-decoded differently: fall back to the char-wise suffix.
                _ => full.chars().skip(prefix.chars().count()).collect(),
            };
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            delta
        } else {
            String::new()
        }
    }
}

/// What a request needs to judge stop conditions.
#[derive(Debug, Clone)]
pub(crate) struct StopRules {
    pub eos: Vec<u32>,
    pub context_len: usize,
    pub max_stop_len: usize,
}

/// One of the `n` samples of a request.
#[derive(Debug)]
pub(crate) struct Sample {
    pub index: usize,
    pub rng: ChaCha8Rng,
    pub tokens: Vec<u32>,
    pub logprobs: Vec<f32>,
    pub top: Option<Vec<Vec<TokenLogprob>>>,
    pub text: String,
    pub emitted: usize,
    pub detok: Option<IncrementalDetok>,
    pub finish: Option<(FinishReason, Option<StopReason>)>,
    pub version_start: Option<u64>,
    pub version_end: u64,
    /// KV of `prompt + tokens[..len-1]` (the last sampled token is fed by the next decode
    /// step). `None` before the group fork and after preemption.
    pub cache: Option<SeqCache>,
}

impl Sample {
    /// A fresh sample.
    pub fn new(
        index: usize,
        rng: ChaCha8Rng,
        want_top: bool,
        detok: Option<IncrementalDetok>,
    ) -> Self {
        Self {
            index,
            rng,
            tokens: Vec::new(),
            logprobs: Vec::new(),
            top: want_top.then(Vec::new),
            text: String::new(),
            emitted: 0,
            detok,
            finish: None,
            version_start: None,
            version_end: 0,
            cache: None,
        }
    }

    /// Whether the sample has finished.
    pub fn done(&self) -> bool {
        self.finish.is_some()
    }

    /// Records a sampled token, checks stop conditions and returns the delta event to stream.
    pub fn on_token(
        &mut self,
        s: Sampled,
        p: &SamplingParams,
        rules: &StopRules,
        prompt_len: usize,
        dec: Option<&dyn TokenDecoder>,
        version: u64,
    ) -> StreamEvent {
        let tok = s.token;
        self.tokens.push(tok);
        self.logprobs.push(s.logprob);
        if let (Some(all), Some(t)) = (self.top.as_mut(), s.top.as_ref()) {
            all.push(t.clone());
        }
        self.version_start.get_or_insert(version);
        self.version_end = version;
        let stop_tok =
            p.stop_token_ids.contains(&tok) || (!p.ignore_eos && rules.eos.contains(&tok));
        if stop_tok {
            self.finish = Some((FinishReason::Stop, Some(StopReason::Token(tok))));
        } else if let (Some(d), Some(dec)) = (self.detok.as_mut(), dec) {
            let delta = d.push(tok, dec);
            let search_from = self.text.len().saturating_sub(rules.max_stop_len);
            self.text.push_str(&delta);
            if !p.stop.is_empty() && !delta.is_empty() {
                let mut from = search_from;
                while !self.text.is_char_boundary(from) {
                    from -= 1;
                }
                let hay = &self.text[from..];
                let hit = p
                    .stop
                    .iter()
                    .filter_map(|st| hay.find(st.as_str()).map(|pos| (pos, st)))
                    .min_by_key(|(pos, _)| *pos);
                if let Some((pos, st)) = hit {
                    let cut = from + pos;
                    self.text.truncate(cut);
                    self.emitted = self.emitted.min(cut);
                    self.finish = Some((FinishReason::Stop, Some(StopReason::String(st.clone()))));
                }
            }
        }
        if self.finish.is_none()
            && (self.tokens.len() >= p.max_tokens
                || prompt_len + self.tokens.len() >= rules.context_len)
        {
            self.finish = Some((FinishReason::Length, None));
        }
        // Text safe to stream: everything once finished, otherwise hold back what could still
        // turn out to be the start of a stop string.
        let mut end = if self.finish.is_some() || p.stop.is_empty() {
            self.text.len()
        } else {
            self.text
                .len()
                .saturating_sub(rules.max_stop_len.saturating_sub(1))
                .max(self.emitted)
        };
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let end = end.max(self.emitted);
        let text_delta = self.text[self.emitted..end].to_string();
        self.emitted = end;
        StreamEvent::Delta {
            index: self.index,
            token_id: tok,
            text_delta,
            logprob: s.logprob,
            top_logprobs: s.top,
            finish_reason: self.finish.as_ref().map(|f| f.0),
        }
    }

    /// Ends the sample with `reason` (abort / cache exhaustion) if it has not ended.
    pub fn force_finish(&mut self, reason: FinishReason) {
        if self.finish.is_none() {
            self.finish = Some((reason, None));
        }
    }

    /// The finished completion.
    pub fn to_completion(&self) -> Completion {
        let (finish_reason, stop_reason) =
            self.finish.clone().unwrap_or((FinishReason::Abort, None));
        Completion {
            index: self.index,
            token_ids: self.tokens.clone(),
            text: self.text.clone(),
            logprobs: self.logprobs.clone(),
            top_logprobs: self.top.clone(),
            finish_reason,
            stop_reason,
            policy_version: self.version_start.unwrap_or(self.version_end),
            policy_version_end: self.version_end,
        }
    }
}

/// Builds the final response of a request.
pub(crate) fn response(
    prompt: &[u32],
    prompt_logprobs: Option<Vec<Option<PromptTokenLogprob>>>,
    samples: &[Sample],
    cached_prompt_tokens: usize,
) -> RolloutResponse {
    let completions: Vec<Completion> = samples.iter().map(Sample::to_completion).collect();
    let completion_tokens = completions.iter().map(|c| c.token_ids.len()).sum();
    RolloutResponse {
        prompt_token_ids: prompt.to_vec(),
        prompt_logprobs,
        completions,
        usage: Usage {
            prompt_tokens: prompt.len(),
            completion_tokens,
            total_tokens: prompt.len() + completion_tokens,
            cached_prompt_tokens,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Token i decodes to the i-th entry; id 9 is half of a two-byte character ("é" = 10 then 9).
    struct Toy;
    impl TokenDecoder for Toy {
        fn decode(&self, ids: &[u32]) -> Result<String, oxrl_models::ModelError> {
            let mut bytes = Vec::new();
            for &i in ids {
                match i {
                    9 => bytes.push(0xA9),
                    10 => bytes.push(0xC3),
                    _ => bytes.extend_from_slice(
                        ["a", "b", " ", "STOP", "x", "y", "z", "<", ">"][i as usize % 9].as_bytes(),
                    ),
                }
            }
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
    }

    fn feed(p: &SamplingParams, toks: &[u32]) -> (Sample, String) {
        let rules = StopRules {
            eos: vec![8],
            context_len: 100,
            max_stop_len: p.stop.iter().map(|s| s.len()).max().unwrap_or(0),
        };
        let mut s = Sample::new(
            0,
            super::super::sampler::rng_for(0, 0),
            false,
            Some(IncrementalDetok::new(&[0])),
        );
        let mut streamed = String::new();
        for &t in toks {
            if s.done() {
                break;
            }
            let ev = s.on_token(
                Sampled {
                    token: t,
                    logprob: -1.0,
                    top: None,
                },
                p,
                &rules,
                1,
                Some(&Toy),
                3,
            );
            if let StreamEvent::Delta { text_delta, .. } = ev {
                streamed.push_str(&text_delta);
            }
        }
        (s, streamed)
    }

    #[test]
    fn stop_string_is_cut_from_text_but_tokens_are_kept() {
        let p = SamplingParams {
            stop: vec!["xy".into()],
            max_tokens: 50,
            ..SamplingParams::default()
        };
        let (s, streamed) = feed(&p, &[0, 1, 4, 5, 6, 6]);
        assert_eq!(s.text, "ab");
        assert_eq!(streamed, "ab");
        assert_eq!(s.tokens, vec![0, 1, 4, 5]);
        let c = s.to_completion();
        assert_eq!(c.finish_reason, FinishReason::Stop);
        assert_eq!(c.stop_reason, Some(StopReason::String("xy".into())));
        assert_eq!((c.policy_version, c.policy_version_end), (3, 3));
    }

    #[test]
    fn eos_and_stop_tokens_end_without_text_and_length_caps() {
        let mut p = SamplingParams {
            max_tokens: 50,
            ..SamplingParams::default()
        };
        let (s, _) = feed(&p, &[0, 8, 1]);
        assert_eq!(s.tokens, vec![0, 8]);
        assert_eq!(s.text, "a");
        assert_eq!(
            s.finish,
            Some((FinishReason::Stop, Some(StopReason::Token(8))))
        );
        p.ignore_eos = true;
        p.max_tokens = 3;
        let (s, _) = feed(&p, &[0, 8, 1, 1]);
        assert_eq!(s.tokens, vec![0, 8, 1]);
        assert_eq!(s.finish, Some((FinishReason::Length, None)));
        p.stop_token_ids = vec![1];
        let (s, _) = feed(&p, &[0, 1]);
        assert_eq!(
            s.finish,
            Some((FinishReason::Stop, Some(StopReason::Token(1))))
        );
    }

    #[test]
    fn split_utf8_is_emitted_whole() {
        let p = SamplingParams {
            max_tokens: 3,
            ..SamplingParams::default()
        };
        let (s, streamed) = feed(&p, &[0, 10, 9]);
        assert_eq!(s.text, "aé");
        assert_eq!(streamed, "aé");
    }
}
