"""Does a question need the knowledge base? And in which language should the answer be?

Decided in code, not by the model: greetings, thanks and questions about the assistant itself are recognisable by form,
and a wrong "no" costs a grounded answer, so anything not clearly chit-chat goes to retrieval.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from retrieval.text import Language, has_cjk, language_of

__all__ = ["Language", "language_of", "decide_retrieval", "RetrievalDecision", "NO_ANSWER", "SMALLTALK_REPLY"]

_LATIN = re.compile(r"[A-Za-z]")

_SMALLTALK_EN = re.compile(
    r"^\s*(hi|hello|hey|good (morning|afternoon|evening)|thanks?( you)?|thank you( very much)?|bye|goodbye|"
    r"ok(ay)?|cool|great|who are you|what are you|what can you do|how are you|are you (a bot|an ai|human)|"
    r"what is your name|help)\s*[!?.。！？]*\s*$",
    re.IGNORECASE,
)
_SMALLTALK_ZH = re.compile(
    r"^\s*(你好|您好|嗨|哈喽|早上好|下午好|晚上好|谢谢(你|您)?|多谢|再见|拜拜|好的|你是谁|你是什么|你能做什么|"
    r"你叫什么(名字)?|你好吗|在吗)\s*[!?.。！？呀啊呢吗]*\s*$"
)



@dataclass(frozen=True)
class RetrievalDecision:
    needed: bool
    reason: str


def decide_retrieval(question: str) -> RetrievalDecision:
    if _SMALLTALK_EN.match(question) or _SMALLTALK_ZH.match(question):
        return RetrievalDecision(False, "greeting or a question about the assistant")
    if not has_cjk(question) and not _LATIN.search(question) and not re.search(r"\d", question):
        return RetrievalDecision(False, "no words to search for")
    return RetrievalDecision(True, "a question about the knowledge base")


SMALLTALK_REPLY = {
    "en": "Hello! I answer questions from this knowledge base and cite the documents I use. "
          "What would you like to know?",
    "zh": "您好！我根据知识库中的文档回答问题，并注明出处。请问您想了解什么？",
}
NO_ANSWER = {
    "en": "The knowledge base does not contain the answer to this question.",
    "zh": "知识库中没有找到这个问题的答案。",
}
