"""An mteb model over `LLM2Vec`: mteb's `encode` (mteb 2's DataLoader of batches, or mteb 1's list of
sentences), each task mapped to its LLM2Vec instruction, and cosine similarity.

    import mteb
    from llm2vec_rs.mteb import MTEBModel

    model = MTEBModel.from_pretrained("smollm2-135m-instruct")
    mteb.evaluate(model, mteb.get_tasks(tasks=["STSBenchmark"]))

mteb itself is not a dependency (it needs torch); this module imports nothing from it.
"""

import numpy as np

from .encoder import LLM2Vec

STS_INSTRUCTION = "Retrieve semantically similar text:"
_CQADUPSTACK = (
    "Given a question, retrieve detailed question descriptions from Stackexchange that are duplicates to the "
    "given question:"
)
_CQADUPSTACK_FORUMS = [
    "Android", "English", "Gaming", "Gis", "Mathematica", "Physics",
    "Programmers", "Stats", "Tex", "Unix", "Webmasters", "Wordpress",
]
_MTEB_STS = [
    "BIOSSES", "SICK-R", "STS12", "STS13", "STS14", "STS15", "STS16", "STS17", "STS22", "STSBenchmark",
]

# Task name -> instruction. Retrieval instructions and STS16's are those of the reference's MTEB evaluation
# (McGill-NLP/llm2vec test_configs/mteb/task_to_instructions.json), STS16's applied to every English STS task;
# the other local tasks take the instruction_hint of their ../shared/data/<task>/task.json.
TASK_INSTRUCTIONS = {
    "ArguAna": "Given a claim, find documents that refute the claim:",
    "ClimateFEVER": "Given a claim about climate change, retrieve documents that support or refute the claim:",
    "DBPedia": "Given a query, retrieve relevant entity descriptions from DBPedia:",
    "FEVER": "Given a claim, retrieve documents that support or refute the claim:",
    "FiQA2018": "Given a financial question, retrieve user replies that best answer the question:",
    "HotpotQA": "Given a multi-hop question, retrieve documents that can help answer the question:",
    "MSMARCO": "Given a web search query, retrieve relevant passages that answer the query:",
    "NFCorpus": "Given a question, retrieve relevant documents that best answer the question:",
    "NQ": "Given a question, retrieve Wikipedia passages that answer the question:",
    "QuoraRetrieval": "Given a question, retrieve questions that are semantically equivalent to the given question:",
    "SCIDOCS": "Given a scientific paper title, retrieve paper abstracts that are cited by the given paper:",
    "SciFact": "Given a scientific claim, retrieve documents that support or refute the claim:",
    "TRECCOVID": "Given a query on COVID-19, retrieve documents that answer the query:",
    "Touche2020": "Given a question, retrieve detailed and persuasive arguments that answer the question:",
    **{f"CQADupstack{forum}Retrieval": _CQADUPSTACK for forum in _CQADUPSTACK_FORUMS},
    **{name: STS_INSTRUCTION for name in _MTEB_STS},
    "Banking77Classification": "Given a online banking query, find the corresponding intents:",
    "BBCNewsClusteringP2P": "Identify the topic or theme of the given news articles:",
    "BBCNewsClusteringS2S": "Identify the topic or theme of the given news articles:",
    "CRClassification": "Classify the sentiment expressed in the given customer product review:",
    "MRClassification": "Classify the sentiment expressed in the given movie review text:",
    "SICKEntailmentPairs": "Given a premise, retrieve a hypothesis that is entailed by the premise:",
    "SST2Classification": "Classify the sentiment expressed in the given movie review text:",
    "TRECClassification": "Given a question, classify the type of answer it asks for:",
}

# Retrieval documents are encoded without an instruction, as in the reference's evaluation.
_DOCUMENT_PROMPT_TYPES = {"document", "passage"}


def task_instruction(task_name, task_type=None, prompt_type=None, task_prompt=None, table=None):
    """The instruction for one side of a task: "" for retrieval documents; else the table's entry for the task,
    the STS instruction for any STS task, mteb's own prompt for the task (`task_prompt`: a string or a dict by
    prompt type), or "". Ends with ":", as LLM2Vec instructions do."""
    prompt_type = getattr(prompt_type, "value", prompt_type)
    if prompt_type in _DOCUMENT_PROMPT_TYPES:
        return ""
    if isinstance(task_prompt, dict):
        task_prompt = task_prompt.get(prompt_type)
    instruction = (
        (TASK_INSTRUCTIONS if table is None else table).get(task_name)
        or (STS_INSTRUCTION if task_type == "STS" else None)
        or task_prompt
        or ""
    )
    return _with_colon(instruction)


def _with_colon(instruction):
    instruction = instruction.strip()
    if instruction and not instruction.endswith(":"):
        instruction = instruction.rstrip(".") + ":"
    return instruction


class MTEBModel:
    """An `LLM2Vec` model as mteb wants it. `instructions` adds to or overrides `TASK_INSTRUCTIONS`."""

    # mteb describes a model without metadata with an empty ModelMeta.
    mteb_model_meta = None

    def __init__(self, model, instructions=None):
        self.model = model
        self.instructions = {**TASK_INSTRUCTIONS, **(instructions or {})}

    @classmethod
    def from_pretrained(cls, *args, instructions=None, **kwargs):
        """`LLM2Vec.from_pretrained(*args, **kwargs)`, wrapped."""
        return cls(LLM2Vec.from_pretrained(*args, **kwargs), instructions)

    def encode(
        self,
        inputs,
        *,
        task_metadata=None,
        task_name=None,
        prompt_type=None,
        batch_size=32,
        show_progress_bar=False,
        **mteb_kwargs,
    ):
        """Embeds `inputs` (an mteb DataLoader of `{"text": [...]}` batches, or a list of strings) with the
        instruction of the task (`task_metadata` from mteb 2, or `task_name` from mteb 1) and side
        (`prompt_type`). Other mteb arguments (hf_split, hf_subset, ...) do not change the embeddings."""
        name = getattr(task_metadata, "name", task_name)
        instruction = task_instruction(
            name,
            task_type=getattr(task_metadata, "type", None),
            prompt_type=prompt_type,
            task_prompt=getattr(task_metadata, "prompt", None),
            table=self.instructions,
        )
        texts = _texts(inputs)
        pairs = [[instruction, text] for text in texts]
        return self.model.encode(pairs, batch_size=batch_size, show_progress_bar=show_progress_bar)

    def similarity(self, embeddings1, embeddings2):
        """Cosine similarity of every row of `embeddings1` with every row of `embeddings2`."""
        return _unit_rows(embeddings1) @ _unit_rows(embeddings2).T

    def similarity_pairwise(self, embeddings1, embeddings2):
        """Cosine similarity of matching rows."""
        return np.sum(_unit_rows(embeddings1) * _unit_rows(embeddings2), axis=1)


def _texts(inputs):
    """The texts of a list of strings or of an iterable of batches (`{"text": [...]}`)."""
    texts = []
    for item in inputs:
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, dict) and "text" in item:
            texts.extend(item["text"])
        else:
            raise TypeError(f"expected strings or batches with a 'text' list, got {type(item).__name__}")
    return texts


def _unit_rows(x):
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
