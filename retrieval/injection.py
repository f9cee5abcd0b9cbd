"""Sentences in a document that address the assistant instead of the reader: prompt injection, found in code.

Documents are data. The prompt says so, but a 1.5B model obeys a well-placed "ignore all previous instructions" in
the passage that best matches the question (issue 11: it answered "PWNED" and cited the planted file as support).
So such sentences never reach the model, and never count as support for a citation: `select` drops them from the
evidence and the citation checker skips them. A false positive costs one sentence of evidence; the patterns are
written so that ordinary manual text ("ignore the warning light", "reply to the e-mail") does not match.
"""

from __future__ import annotations

import re

_EN = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass)\b[^.!?\n]{0,40}?\b(?:previous|prior|above|earlier|preceding|all|any|"
    r"other|your|system)\b[^.!?\n]{0,30}?\b(?:instructions?|prompts?|rules|directions|guidelines|context|messages?)\b"
    r"|\b(?:you are now|from now on,? you|act as (?:an? )?(?:ai|assistant|chatbot|model)|pretend (?:to be|you are))\b"
    r"|\b(?:answer|respond to|reply to)\s+(?:every|all|each|any)\s+(?:question|query|request|user)s?\b[^.!?\n]{0,40}?"
    r"\b(?:with|by saying|using)\b"
    r"|\b(?:reply|respond|answer|say|output|print|write)\b(?:\s+(?:only|just|exactly))?(?:\s+with)?\s*[:\"'“]?\s*"
    r"(?-i:[A-Z]{4,})\b[\"'”]?\s*(?:[.!]|$)"
    r"|\b(?:reveal|disclose|leak|print|show|tell (?:me|the user))\b[^.!?\n]{0,40}?\b(?:system prompt|password|secret|"
    r"api key|credentials?|vault code|hidden instructions?|other collections?)\b"
    r"|\b(?:system prompt|new instructions?|(?:note|message|instructions?) (?:to|for) (?:the )?(?:ai|assistant|"
    r"language model|llm|chatbot|model))\b"
    r"|\b(?:dear|attention|hey)\s*,?\s+(?:ai|assistant|language model|llm|chatbot)\b",
    re.IGNORECASE,
)
_ZH = re.compile(
    r"(?:忽略|无视|忘记|忘掉|不要理会|覆盖)[^。！？\n]{0,12}(?:之前|以上|前面|上述|先前|所有|全部|其他|系统)?[^。！？\n]{0,8}"
    r"(?:指令|指示|提示词?|规则|要求|设定|命令)"
    r"|(?:从现在(?:起|开始)|你现在是|你的新(?:任务|身份|指令)|扮演(?:一个)?(?:AI|人工智能|助手|机器人))"
    r"|(?:回答|回复|答复)(?:所有|每个|每一个|任何)(?:的)?(?:问题|提问|用户)[^。！？\n]{0,20}(?:都|一律|只)"
    r"|(?:泄露|透露|公开|说出|告诉(?:我|用户))[^。！？\n]{0,20}(?:密码|密钥|口令|系统提示|机密|保险库|其他(?:知识库|集合))"
    r"|(?:致|给)(?:AI|人工智能|语言模型|大模型)?(?:助手|模型|机器人)的(?:指令|消息|说明)"
    r"|(?:把|将)[^。！？\n]{0,12}(?:密码|密钥|口令|系统提示|机密)[^。！？\n]{0,6}(?:告诉|透露|发给|泄露)"
)


def looks_like_instruction(sentence: str) -> bool:
    """True when the sentence gives orders to an AI assistant rather than information to a reader."""
    return bool(_EN.search(sentence) or _ZH.search(sentence))
