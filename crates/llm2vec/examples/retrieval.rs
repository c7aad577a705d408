//! The classic LLM2Vec example: two web-search queries (with an instruction) against two documents.
//!
//! `cargo run --release --example retrieval -- [model] [causal|bidirectional]`
//! prints the cosine matrix of the normalised embeddings (rows: queries, columns: documents).

use llm2vec::{AttentionMode, Encoder, Input, Options};

const INSTRUCTION: &str = "Given a web search query, retrieve relevant passages that answer the query:";
const QUERIES: [&str; 2] = ["how much protein should a female eat", "summit define"];
const DOCUMENTS: [&str; 2] = [
    "As a general guideline, the CDC's average requirement of protein for women ages 19 to 70 is 46 grams per day. But, as you can see from this chart, you'll need to increase that if you're expecting or training for a marathon. Check out the chart below to see how much protein you should be eating each day.",
    "Definition of summit for English Language Learners. : 1 the highest point of a mountain : the top of a mountain. : 2 the highest level. : 3 a meeting or series of meetings between the leaders of two or more governments.",
];

fn main() -> llm2vec::Result<()> {
    let mut args = std::env::args().skip(1);
    let model = args.next().unwrap_or_else(|| llm2vec::load::DEFAULT_MODEL.to_string());
    let attention = match args.next().as_deref() {
        Some("causal") => AttentionMode::Causal,
        _ => AttentionMode::Bidirectional,
    };
    let encoder = Encoder::from_pretrained(&model, Options { attention, normalize: true, ..Options::default() })?;
    let queries: Vec<Input> = QUERIES.iter().map(|q| Input::new(INSTRUCTION, *q)).collect();
    let documents: Vec<Input> = DOCUMENTS.iter().map(|d| Input::text(*d)).collect();
    let q = encoder.encode(&queries)?;
    let d = encoder.encode(&documents)?;
    println!("model {model}, {attention:?} attention, mean pooling; cosine(query, document):");
    for i in 0..q.rows {
        let row: Vec<f32> = (0..d.rows).map(|j| q.row(i).iter().zip(d.row(j)).map(|(a, b)| a * b).sum()).collect();
        let best = if row[i] >= row.iter().copied().fold(f32::MIN, f32::max) {
            "diagonal is the row maximum"
        } else {
            "diagonal is NOT the row maximum"
        };
        println!("  {:<40} {:?}  ({best})", QUERIES[i], row.iter().map(|v| format!("{v:.4}")).collect::<Vec<_>>());
    }
    Ok(())
}
