//! Instructions: LLM2Vec's MTEB task-to-instruction table (McGill-NLP/llm2vec @ 3c633e86,
//! `test_configs/mteb/task_to_instructions.json`), else the task's `instruction_hint`, unless
//! overridden per task. Retrieval and reranking instruct the queries only; every other type instructs
//! every text, as MTEB's LLM2Vec wrapper does.

use std::collections::BTreeMap;

use crate::task::{TaskSpec, TaskType};

/// Which texts of a task get the instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppliesTo {
    Queries,
    AllTexts,
}

impl AppliesTo {
    pub fn of(kind: TaskType) -> Self {
        match kind {
            TaskType::Retrieval | TaskType::Reranking => AppliesTo::Queries,
            _ => AppliesTo::AllTexts,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            AppliesTo::Queries => "queries only (documents get no instruction)",
            AppliesTo::AllTexts => "every text",
        }
    }
}

/// The instruction for `spec`: the override, else the reference table, else the task's hint; made to
/// end in ':' as MTEB's `llm2vec_instruction` does.
pub fn resolve(spec: &TaskSpec, overrides: &BTreeMap<String, String>) -> String {
    let chosen = overrides
        .get(&spec.name)
        .map(String::as_str)
        .or_else(|| reference(&spec.name))
        .or(spec.instruction_hint.as_deref())
        .unwrap_or("");
    normalize(chosen)
}

/// The reference table's instruction for an MTEB task name.
pub fn reference(task: &str) -> Option<&'static str> {
    REFERENCE.iter().find(|(name, _)| *name == task).map(|(_, instruction)| *instruction)
}

/// A non-empty instruction not ending in ':' loses its outer dots and gains a ':'.
pub fn normalize(instruction: &str) -> String {
    if instruction.is_empty() || instruction.ends_with(':') {
        instruction.to_string()
    } else {
        format!("{}:", instruction.trim_matches('.'))
    }
}

/// The reference's table, verbatim.
pub const REFERENCE: &[(&str, &str)] = &[
    ("ClimateFEVER", "Given a claim about climate change, retrieve documents that support or refute the claim:"),
    ("HotpotQA", "Given a multi-hop question, retrieve documents that can help answer the question:"),
    ("FEVER", "Given a claim, retrieve documents that support or refute the claim:"),
    ("MSMARCO", "Given a web search query, retrieve relevant passages that answer the query:"),
    ("DBPedia", "Given a query, retrieve relevant entity descriptions from DBPedia:"),
    ("NQ", "Given a question, retrieve Wikipedia passages that answer the question:"),
    ("QuoraRetrieval", "Given a question, retrieve questions that are semantically equivalent to the given question:"),
    ("SCIDOCS", "Given a scientific paper title, retrieve paper abstracts that are cited by the given paper:"),
    ("TRECCOVID", "Given a query on COVID-19, retrieve documents that answer the query:"),
    ("Touche2020", "Given a question, retrieve detailed and persuasive arguments that answer the question:"),
    ("SciFact", "Given a scientific claim, retrieve documents that support or refute the claim:"),
    ("NFCorpus", "Given a question, retrieve relevant documents that best answer the question:"),
    ("ArguAna", "Given a claim, find documents that refute the claim:"),
    ("CQADupstackTexRetrieval", "Given a question, retrieve detailed question descriptions from Stackexchange that are duplicates to the given question:"),
    ("CQADupstackWebmastersRetrieval", "Given a question, retrieve detailed question descriptions from Stackexchange that are duplicates to the given question:"),
    ("CQADupstackEnglishRetrieval", "Given a question, retrieve detailed question descriptions from Stackexchange that are duplicates to the given question:"),
    ("CQADupstackGamingRetrieval", "Given a question, retrieve detailed question descriptions from Stackexchange that are duplicates to the given question:"),
    ("CQADupstackGisRetrieval", "Given a question, retrieve detailed question descriptions from Stackexchange that are duplicates to the given question:"),
    ("CQADupstackUnixRetrieval", "Given a question, retrieve detailed question descriptions from Stackexchange that are duplicates to the given question:"),
    ("CQADupstackMathematicaRetrieval", "Given a question, retrieve detailed question descriptions from Stackexchange that are duplicates to the given question:"),
    ("CQADupstackStatsRetrieval", "Given a question, retrieve detailed question descriptions from Stackexchange that are duplicates to the given question:"),
    ("CQADupstackPhysicsRetrieval", "Given a question, retrieve detailed question descriptions from Stackexchange that are duplicates to the given question:"),
    ("CQADupstackProgrammersRetrieval", "Given a question, retrieve detailed question descriptions from Stackexchange that are duplicates to the given question:"),
    ("CQADupstackAndroidRetrieval", "Given a question, retrieve detailed question descriptions from Stackexchange that are duplicates to the given question:"),
    ("CQADupstackWordpressRetrieval", "Given a question, retrieve detailed question descriptions from Stackexchange that are duplicates to the given question:"),
    ("FiQA2018", "Given a financial question, retrieve user replies that best answer the question:"),
    ("AskUbuntuDupQuestions", "Retrieve duplicate questions from AskUbuntu forum:"),
    ("StackOverflowDupQuestions", "Retrieve duplicate questions from StackOverflow forum:"),
    ("SciDocsRR", "Given a title of a scientific paper, retrieve the titles of other relevant papers:"),
    ("MindSmallReranking", "Retrieve relevant news articles based on user browsing history:"),
    ("Banking77Classification", "Given a online banking query, find the corresponding intents:"),
    ("EmotionClassification", "Classify the emotion expressed in the given Twitter message into one of the six emotions: anger, fear, joy, love, sadness, and surprise:"),
    ("TweetSentimentExtractionClassification", "Classify the sentiment of a given tweet as either positive, negative, or neutral:"),
    ("AmazonCounterfactualClassification", "Classify a given Amazon customer review text as either counterfactual or notcounterfactual:"),
    ("ImdbClassification", "Classify the sentiment expressed in the given movie review text from the IMDB dataset:"),
    ("MassiveIntentClassification", "Given a user utterance as query, find the user intents:"),
    ("MassiveScenarioClassification", "Given a user utterance as query, find the user scenarios:"),
    ("MTOPDomainClassification", "Classify the intent domain of the given utterance in task-oriented conversation:"),
    ("MTOPIntentClassification", "Classify the intent of the given utterance in task-oriented conversation:"),
    ("ToxicConversationsClassification", "Classify the given comments as either toxic or not toxic:"),
    ("AmazonPolarityClassification", "Classify Amazon reviews into positive or negative sentiment:"),
    ("AmazonReviewsClassification", "Classify the given Amazon review into its appropriate rating category:"),
    ("TwentyNewsgroupsClustering", "Identify the topic or theme of the given news articles:"),
    ("BiorxivClusteringS2S", "Identify the main category of Biorxiv papers based on the titles:"),
    ("MedrxivClusteringS2S", "Identify the main category of Medrxiv papers based on the titles:"),
    ("ArxivClusteringP2P", "Identify the main and secondary category of Arxiv papers based on the titles and abstracts:"),
    ("ArxivClusteringS2S", "Identify the main and secondary category of Arxiv papers based on the titles:"),
    ("BiorxivClusteringP2P", "Identify the main category of Biorxiv papers based on the titles and abstracts:"),
    ("MedrxivClusteringP2P", "Identify the main category of Medrxiv papers based on the titles and abstracts:"),
    ("RedditClustering", "Identify the topic or theme of Reddit posts based on the titles:"),
    ("RedditClusteringP2P", "Identify the topic or theme of Reddit posts based on the titles and posts:"),
    ("StackExchangeClustering", "Identify the topic or theme of StackExchange posts based on the titles:"),
    ("StackExchangeClusteringP2P", "Identify the topic or theme of StackExchange posts based on the given paragraphs:"),
    ("TwitterSemEval2015", "Retrieve tweets that are semantically similar to the given tweet:"),
    ("TwitterURLCorpus", "Retrieve tweets that are semantically similar to the given tweet:"),
    ("SprintDuplicateQuestions", "Retrieve duplicate questions from Sprint forum:"),
    ("STS12", "Retrieve semantically similar text:"),
    ("STS13", "Retrieve semantically similar text:"),
    ("STS14", "Retrieve semantically similar text:"),
    ("STS15", "Retrieve semantically similar text:"),
    ("STS16", "Retrieve semantically similar text:"),
    ("STS17", "Retrieve semantically similar text:"),
    ("STS22", "Retrieve semantically similar text:"),
    ("BIOSSES", "Retrieve semantically similar text:"),
    ("SICK-R", "Retrieve semantically similar text:"),
    ("STSBenchmark", "Retrieve semantically similar text:"),
    ("SummEval", "Given a news summary, retrieve other semantically similar summaries:"),
];
