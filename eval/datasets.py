"""Data set adapters: each turns a public data set (or our own jsonl) into documents to ingest and questions to ask.

`load_dataset("KIND:PATH", DatasetOptions(...))` returns a `QADataset`: `records` (text documents ingested with
Ingestor.ingest_records), `files` (documents rendered here, written to a folder and ingested as files, so our parsers
are measured) and `folders` (existing files ingested as they are), plus the questions as `QAItem`s. Items name their
documents by *source reference*: a record key, or a file name relative to the ingested folder.

Our jsonl format, one question per line: `question`, `answers` (list; they are key facts that must all appear, unless
`"match": "any"` makes them alternatives), optional `id`, `unanswerable`, `kind` or `categories`, `language`, `as_of`,
`forbidden` (strings that must not appear), `source_files` (names of the files holding the answer) and `documents`
(a list of {"title", "text"} or of paths relative to the jsonl file). `--corpus DIR` adds a folder of files.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import math
import random
import re
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ingest.pipeline import Record

AnswerRule = Literal["span", "keys", "numeric", "rgb"]
KINDS = ("squad2", "rgb", "tatqa", "freshqa", "cmrc", "hotpotqa", "jsonl")


@dataclass(frozen=True)
class QAItem:
    id: str
    question: str
    answers: tuple[str, ...] = ()
    unanswerable: bool = False
    lang: str = "en"
    rule: AnswerRule = "span"  # how correctness is decided (see eval.metrics)
    categories: dict[str, str] = field(default_factory=dict)  # breakdowns: answer_from, fact_type, noise_ratio...
    gold_sources: tuple[str, ...] = ()  # source references of the documents that hold the answer
    scope: tuple[str, ...] = ()  # retrieval restricted to these documents; empty = the whole collection
    as_of: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # adapter gold: RGB answer parts, TAT-QA scale, forbidden


@dataclass(frozen=True)
class CorpusFile:
    name: str  # relative path inside the folder the runner writes
    data: bytes


@dataclass(frozen=True)
class QADataset:
    kind: str
    name: str  # short, for collection and report names
    items: tuple[QAItem, ...]
    records: tuple[Record, ...] = ()
    files: tuple[CorpusFile, ...] = ()
    folders: tuple[Path, ...] = ()

    def for_items(self, items: Sequence[QAItem]) -> QADataset:
        """These items, and when every one is scoped, only the documents they can see (nothing else is read)."""
        if items and all(i.scope for i in items) and not self.folders:
            refs = {r for i in items for r in i.scope}
            return replace(self, items=tuple(items), records=tuple(r for r in self.records if r.key in refs),
                           files=tuple(f for f in self.files if f.name in refs))
        return replace(self, items=tuple(items))


@dataclass(frozen=True)
class DatasetOptions:
    corpus: Path | None = None  # jsonl: a folder of files; freshqa/hotpotqa: override the corpus location
    scope: Literal["doc", "corpus"] | None = None  # None: the adapter's default (tatqa, rgb: doc; others: corpus)
    noise_ratios: tuple[float, ...] = (0.4,)  # rgb: share of noise passages (1.0 = negative rejection)
    passages: int = 5  # rgb: passages per question
    seed: int = 0
    as_of: str | None = None  # freshqa: ask "as of" this date
    corpus_date: str | None = "2023-12-01"  # freshqa: when the wiki pages were crawled (their effective date)
    table_format: Literal["html", "docx"] = "html"  # tatqa
    articles: tuple[str, ...] = ()  # squad2/cmrc: only these articles (titles, "_" or " " alike), documents and items

    def __post_init__(self) -> None:
        if any(not 0.0 <= r <= 1.0 for r in self.noise_ratios) or not self.noise_ratios:
            raise ValueError(f"noise ratios must be in [0, 1], got {self.noise_ratios}")
        if self.passages < 1:
            raise ValueError(f"passages must be >= 1, got {self.passages}")
        if self.scope not in (None, "doc", "corpus"):
            raise ValueError(f"scope must be doc or corpus, got {self.scope!r}")
        if self.table_format not in ("html", "docx"):
            raise ValueError(f"table_format must be html or docx, got {self.table_format!r}")


def parse_spec(spec: str) -> tuple[str, Path]:
    kind, sep, path = spec.partition(":")
    if not sep or kind not in KINDS or not path:
        raise ValueError(f"dataset must be KIND:PATH with KIND one of {', '.join(KINDS)}; got {spec!r}")
    return kind, Path(path)


def load_dataset(spec: str, options: DatasetOptions = DatasetOptions()) -> QADataset:
    kind, path = parse_spec(spec)
    if not path.exists():
        raise ValueError(f"{kind} data set {str(path)!r} does not exist")
    loader = {"squad2": load_squad2, "cmrc": load_cmrc, "rgb": load_rgb, "tatqa": load_tatqa,
              "freshqa": load_freshqa, "hotpotqa": load_hotpotqa, "jsonl": load_jsonl}[kind]
    return loader(path, options)


def dataset_name(kind: str, path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem if path.is_file() or path.suffix else path.name)
    return f"{kind}-{stem}".strip("-.")[:40]


def select(items: Sequence[QAItem], limit: int | None = None, seed: int = 0,
           sample: Sequence[tuple[str, int]] = ()) -> list[QAItem]:
    """The items to ask, in data-set order: `sample` entries ("KEY", N) take N items per value of category KEY,
    ("KEY:VALUE", N) N items with that value (their union); then `limit` keeps a seeded random N."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    rng = random.Random(seed)
    chosen = list(items)
    if sample:
        keep: set[str] = set()
        for key, n in sample:
            if n < 1:
                raise ValueError(f"sample size must be >= 1, got {key}={n}")
            name, _, value = key.partition(":")
            groups: dict[str, list[QAItem]] = {}
            for it in items:
                if name in it.categories and (not value or it.categories[name] == value):
                    groups.setdefault(it.categories[name], []).append(it)
            if not groups:
                known = sorted({k for it in items for k in it.categories})
                raise ValueError(f"no item has category {key!r}; categories: {known}")
            for members in groups.values():
                keep.update(i.id for i in rng.sample(members, min(n, len(members))))
        chosen = [i for i in items if i.id in keep]
    if limit is not None and len(chosen) > limit:
        ids = {i.id for i in rng.sample(chosen, limit)}
        chosen = [i for i in chosen if i.id in ids]
    return chosen


def _lang(text: str) -> str:
    cjk = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff")
    return "zh" if cjk > 0.3 * max(1, len(text.replace(" ", ""))) else "en"


def _key(prefix: str, text: str) -> str:
    """A content-addressed key: it must not leak what the document is (e.g. 'positive') into titles or search."""
    return f"{prefix}:{hashlib.sha1(text.encode('utf-8')).hexdigest()[:16]}"


def _snippet_title(text: str, n: int = 60) -> str:
    first = re.split(r"(?<=[.!?。！？])\s*", text.strip(), maxsplit=1)[0]
    return first if len(first) <= n else first[:n].rsplit(" ", 1)[0] + "…"


# ---- SQuAD 2.0 and CMRC 2018 (SQuAD format) -------------------------------------------------------------------------


def article_key(title: str) -> str:
    """An article title as --articles matches it: "1973_oil_crisis" and "1973 Oil crisis" are one article."""
    return " ".join(title.replace("_", " ").split()).casefold()


def _articles(data: list[dict[str, Any]], prefix: str, opts: DatasetOptions) -> list[tuple[int, dict[str, Any]]]:
    """(index, article) of the articles to load: all, or those --articles names (every name must exist)."""
    arts = list(enumerate(data))
    if not opts.articles:
        return arts
    titles = {article_key(str(a.get("title") or f"{prefix} {n}")): n for n, a in arts}
    missing = [t for t in opts.articles if article_key(t) not in titles]
    if missing:
        raise ValueError(f"articles {missing} are not in the data set; it has {sorted(titles)}")
    keep = {titles[article_key(t)] for t in opts.articles}
    return [(n, a) for n, a in arts if n in keep]


def _articles_suffix(opts: DatasetOptions) -> str:
    """A name suffix for a subset of articles: its collection must not be the whole set's (ingest only adds)."""
    if not opts.articles:
        return ""
    digest = hashlib.sha1("|".join(sorted(article_key(t) for t in opts.articles)).encode()).hexdigest()[:6]
    return f"-{len(set(map(article_key, opts.articles)))}art-{digest}"


def _squad_like(path: Path, prefix: str, lang: str, opts: DatasetOptions) -> tuple[list[Record], list[QAItem]]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    records, items = [], []
    for n, art in _articles(data, prefix, opts):
        title = str(art.get("title") or f"{prefix} {n}").replace("_", " ")
        key = f"{prefix}:{art.get('id') or art.get('title') or n}"
        records.append(Record(key=key, title=title, text="\n\n".join(p["context"] for p in art["paragraphs"])))
        for p in art["paragraphs"]:
            for qa in p["qas"]:
                answers = tuple(dict.fromkeys(a["text"] for a in qa.get("answers", []) if a["text"].strip()))
                impossible = bool(qa.get("is_impossible")) or not answers
                items.append(QAItem(
                    id=str(qa["id"]), question=qa["question"].strip(), answers=answers, unanswerable=impossible,
                    lang=lang, categories={"answerable": "no" if impossible else "yes", "article": title[:40]},
                    gold_sources=() if impossible else (key,), scope=(key,) if opts.scope == "doc" else (),
                ))
    return records, items


def load_squad2(path: Path, opts: DatasetOptions) -> QADataset:
    records, items = _squad_like(path, "squad2", "en", opts)
    name = dataset_name("squad2", path) + _articles_suffix(opts)
    return QADataset("squad2", name, tuple(items), records=tuple(records))


def load_cmrc(path: Path, opts: DatasetOptions) -> QADataset:
    records, items = _squad_like(path, "cmrc", "zh", opts)
    name = dataset_name("cmrc", path) + _articles_suffix(opts)
    return QADataset("cmrc", name, tuple(items), records=tuple(records))


# ---- RGB ----------------------------------------------------------------------------------------------------------


def rgb_passages(inst: dict[str, Any], variant: str, noise: float, n: int, rng: random.Random) -> tuple[list[str], int]:
    """(passages, how many carry the answer) as RGB's processdata() picks them for this noise ratio."""
    neg_num = math.ceil(n * noise)
    pos_num = n - neg_num
    negative = list(inst.get("negative") or [])
    if variant == "int":
        # One passage per answer part first, then more of each part up to pos_num, then noise.
        groups = [list(g) for g in inst["positive"]]
        for g in groups:
            rng.shuffle(g)
        docs = [g[0] for g in groups if g]
        for depth in range(1, max((len(g) for g in groups), default=0)):
            for g in groups:
                if len(docs) >= pos_num:
                    break
                if len(g) > depth:
                    docs.append(g[depth])
        n_pos = len(docs)
        docs += negative[: max(0, n - n_pos)]
    elif variant == "fact":
        idx = list(range(len(inst["positive_wrong"])))
        chosen = rng.sample(idx, min(len(idx), pos_num))
        docs = [inst["positive_wrong"][i] for i in chosen]
        n_pos = len(docs)
        docs += negative[:neg_num]
    else:
        positive = list(inst.get("positive") or [])
        if noise >= 1.0:
            neg_num, pos_num = n, 0
        elif neg_num > len(negative):
            neg_num, pos_num = len(negative), n - len(negative)
        elif pos_num > len(positive):
            pos_num, neg_num = len(positive), n - len(positive)
        docs = positive[:pos_num] + negative[:neg_num]
        n_pos = min(pos_num, len(positive))
    rng.shuffle(docs)
    return [d for d in docs if isinstance(d, str) and d.strip()], n_pos


def _flat_answers(answer: Any) -> tuple[str, ...]:
    parts = answer if isinstance(answer, list) else [answer]
    return tuple(str(p[0] if isinstance(p, list) and p else p) for p in parts if p not in ("", []))


def load_rgb(path: Path, opts: DatasetOptions) -> QADataset:
    variant = "fact" if "_fact" in path.name else "int" if "_int" in path.name else "noise"
    lang = "zh" if path.name.startswith("zh") else "en"
    records: dict[str, Record] = {}
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        inst = json.loads(line)
        for noise in opts.noise_ratios:
            rng = random.Random(f"{opts.seed}:{inst['id']}:{noise}")
            docs, n_pos = rgb_passages(inst, variant, noise, opts.passages, rng)
            keys = []
            for d in docs:
                k = _key("rgb", d)
                records.setdefault(k, Record(key=k, title=_snippet_title(d), text=d))
                keys.append(k)
            kind = "counterfactual" if variant == "fact" else "integration" if variant == "int" else (
                "rejection" if n_pos == 0 else "noise")
            extra: dict[str, Any] = {"rgb_answer": inst["answer"]}
            if variant == "fact":
                extra["fakeanswer"] = inst.get("fakeanswer")
            items.append(QAItem(
                id=f"{inst['id']}@{noise:g}", question=str(inst["query"]).strip(),
                answers=_flat_answers(inst["answer"]),
                unanswerable=n_pos == 0 and variant != "fact", lang=lang, rule="rgb",
                categories={"noise_ratio": f"{noise:g}", "set": kind}, scope=tuple(dict.fromkeys(keys)), extra=extra,
            ))
    return QADataset("rgb", dataset_name("rgb", path), tuple(items), records=tuple(records.values()))


# ---- TAT-QA -------------------------------------------------------------------------------------------------------


def _header_rows(rows: list[list[str]]) -> int:
    """Leading rows with an empty first cell are column headings ("", "2019", "2018")."""
    n = 0
    while n < len(rows) - 1 and not str(rows[n][0]).strip():
        n += 1
    return n


def tatqa_html(title: str, paragraphs: Sequence[str], rows: list[list[str]]) -> str:
    h = _header_rows(rows)
    esc = html.escape
    head = "".join("<tr>" + "".join(f"<th>{esc(str(c))}</th>" for c in r) + "</tr>" for r in rows[:h])
    body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in r) + "</tr>" for r in rows[h:])
    paras = "".join(f"<p>{esc(p)}</p>\n" for p in paragraphs)
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{esc(title)}</title></head><body>\n"
            f"<h1>{esc(title)}</h1>\n{paras}<table>\n<thead>{head}</thead>\n<tbody>{body}</tbody>\n</table>\n"
            "</body></html>\n")


def tatqa_docx(title: str, paragraphs: Sequence[str], rows: list[list[str]]) -> bytes:
    import docx  # python-docx

    d = docx.Document()
    d.core_properties.title = title
    d.add_heading(title, level=1)
    for p in paragraphs:
        d.add_paragraph(p)
    width = max(len(r) for r in rows) if rows else 0
    table = d.add_table(rows=len(rows), cols=width)
    for i, r in enumerate(rows):
        for j, c in enumerate(r):
            table.cell(i, j).text = str(c)
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def load_tatqa(path: Path, opts: DatasetOptions) -> QADataset:
    contexts = json.loads(path.read_text(encoding="utf-8"))
    files, items = [], []
    for ctx in contexts:
        uid = ctx["table"]["uid"]
        paragraphs = [p["text"] for p in sorted(ctx.get("paragraphs", []), key=lambda p: p.get("order", 0))]
        title = _snippet_title(paragraphs[0], 70) if paragraphs else "Financial table"
        name = f"tatqa-{uid[:13]}.{opts.table_format}"
        rows = [list(r) for r in ctx["table"]["table"]]
        data = (tatqa_html(title, paragraphs, rows).encode("utf-8") if opts.table_format == "html"
                else tatqa_docx(title, paragraphs, rows))
        files.append(CorpusFile(name, data))
        for q in ctx["questions"]:
            ans = q["answer"]
            answers = tuple(str(a) for a in ans) if isinstance(ans, list) else (str(ans),)
            numeric = q.get("answer_type") in ("arithmetic", "count") or (
                len(answers) == 1 and _is_number(answers[0]))
            rule: AnswerRule = "numeric" if numeric else "keys" if q.get("answer_type") == "multi-span" else "span"
            scale = q.get("scale") or ""
            items.append(QAItem(
                id=q["uid"], question=q["question"].strip(), answers=answers, lang="en", rule=rule,
                categories={"answer_from": q.get("answer_from", ""), "scale": scale or "none",
                            "answer_type": q.get("answer_type", "")},
                gold_sources=(name,), scope=() if opts.scope == "corpus" else (name,),
                extra={"scale": scale, "gold_value": ans, "derivation": q.get("derivation", "")},
            ))
    return QADataset("tatqa", dataset_name("tatqa", path), tuple(items), files=tuple(files))


def _is_number(s: str) -> bool:
    from eval.metrics import to_number

    return to_number(s) is not None


# ---- FreshQA ------------------------------------------------------------------------------------------------------


def _wiki_name(url: str) -> str | None:
    m = re.search(r"wikipedia\.org/wiki/([^#?\s]+)", url)
    return urllib.parse.unquote(m.group(1)) if m else None


def load_freshqa(path: Path, opts: DatasetOptions) -> QADataset:
    folder = opts.corpus or path.parent / "wiki_docs"
    if not folder.is_dir():
        raise ValueError(f"freshqa corpus folder {str(folder)!r} does not exist (give --corpus DIR)")
    records = []
    for f in sorted(folder.iterdir()):  # hidden names too (".NET.txt" is a page): records, not a folder walk
        if not f.is_file():
            continue
        text = f.read_text(encoding="utf-8", errors="replace")
        first, _, rest = text.partition("\n")
        title = first[len("Title:"):].strip() if first.startswith("Title:") else f.stem
        records.append(Record(key=f"freshqa:{f.name}", title=title.replace("_", " "), text=rest if rest else text,
                              effective_date=opts.corpus_date))
    keys = {r.key for r in records}
    items = []
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            answers = tuple(row[k].strip() for k in sorted(row) if k.startswith("answer_") and (row[k] or "").strip())
            gold = []
            for url in (row.get("source") or "").split():
                name = _wiki_name(url)
                if name and f"freshqa:{name}.txt" in keys:
                    gold.append(f"freshqa:{name}.txt")
            items.append(QAItem(
                id=str(row["id"]), question=row["question"].strip(), answers=answers, lang="en",
                categories={"fact_type": row.get("fact_type", ""),
                            "false_premise": str(row.get("false_premise", "")).strip().lower(),
                            "num_hops": row.get("num_hops", ""), "effective_year": row.get("effective_year", "")},
                gold_sources=tuple(dict.fromkeys(gold)), as_of=opts.as_of,
            ))
    return QADataset("freshqa", dataset_name("freshqa", path), tuple(items), records=tuple(records))


# ---- HotpotQA -----------------------------------------------------------------------------------------------------


def load_hotpotqa(path: Path, opts: DatasetOptions) -> QADataset:
    corpus_path = opts.corpus or path.with_name(path.stem + "_corpus.json")
    if not corpus_path.is_file():
        raise ValueError(f"hotpotqa corpus {str(corpus_path)!r} does not exist (give --corpus FILE)")
    corpus = json.loads(corpus_path.read_text(encoding="utf-8"))
    pages = corpus.items() if isinstance(corpus, dict) else ((c["title"], c["sentences"]) for c in corpus)
    records = [Record(key=f"hotpot:{t}", title=t, text="".join(s).strip()) for t, s in pages]
    items = []
    for q in json.loads(path.read_text(encoding="utf-8")):
        titles = tuple(dict.fromkeys(t for t, _ in q.get("supporting_facts", [])))
        items.append(QAItem(
            id=str(q["_id"]), question=q["question"].strip(), answers=(str(q["answer"]),), lang="en",
            categories={"type": q.get("type", ""), "level": q.get("level", "")},
            gold_sources=tuple(f"hotpot:{t}" for t in titles),
            scope=tuple(f"hotpot:{t}" for t in titles) if opts.scope == "doc" else (),
            extra={"supporting_facts": q.get("supporting_facts", [])},
        ))
    return QADataset("hotpotqa", dataset_name("hotpotqa", path), tuple(items), records=tuple(records))


# ---- our own jsonl ------------------------------------------------------------------------------------------------


def load_jsonl(path: Path, opts: DatasetOptions) -> QADataset:
    records: dict[str, Record] = {}
    folders: list[Path] = [opts.corpus] if opts.corpus else []
    if opts.corpus and not opts.corpus.exists():
        raise ValueError(f"corpus {str(opts.corpus)!r} does not exist")
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            q = json.loads(line)
        except ValueError as e:
            raise ValueError(f"{path}:{n}: not JSON: {e}") from e
        if not isinstance(q, dict) or not str(q.get("question", "")).strip():
            raise ValueError(f"{path}:{n}: each line needs a non-empty 'question', got {line[:80]!r}")
        docs: list[str] = []
        for d in q.get("documents") or []:
            if isinstance(d, dict):
                text, title = str(d.get("text", "")), str(d.get("title", ""))
                k = str(d.get("key") or _key("jsonl", title + "\n" + text))
                records.setdefault(k, Record(key=k, title=title or _snippet_title(text), text=text))
                docs.append(k)
            else:
                p = (path.parent / str(d)).resolve()
                if not p.exists():
                    raise ValueError(f"{path}:{n}: document {str(d)!r} not found at {p}")
                folders.append(p)
                docs.append(p.name)
        answers = q.get("answers", [])
        answers = (answers,) if isinstance(answers, str) else tuple(str(a) for a in answers)
        unanswerable = bool(q.get("unanswerable", False)) or not answers
        cats = dict(q.get("categories") or {})
        cats.setdefault("kind", str(q.get("kind", "unanswerable" if unanswerable else "answerable")))
        gold = tuple(str(s) for s in q.get("source_files") or []) or (tuple(docs) if not unanswerable else ())
        items.append(QAItem(
            id=str(q.get("id", n)), question=str(q["question"]).strip(), answers=answers, unanswerable=unanswerable,
            lang=str(q.get("language") or q.get("lang") or _lang(q["question"])),
            rule="span" if q.get("match") == "any" else "keys",
            categories={k: str(v) for k, v in cats.items()}, gold_sources=gold,
            scope=(tuple(docs) or gold) if opts.scope == "doc" else (), as_of=q.get("as_of") or opts.as_of,
            extra={"forbidden": list(q.get("forbidden") or [])},
        ))
    if not items:
        raise ValueError(f"{path} holds no questions")
    return QADataset("jsonl", dataset_name("jsonl", path), tuple(items), records=tuple(records.values()),
                     folders=tuple(dict.fromkeys(folders)))


# ---- BEIR (retrieval) ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BeirData:
    name: str
    corpus: tuple[Record, ...]
    queries: dict[str, str]  # only queries that have judgements
    qrels: dict[str, dict[str, int]]


def _jsonl(path: Path) -> Iterable[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def load_beir(folder: Path, split: str = "test") -> BeirData:
    """A BEIR folder: corpus.jsonl (_id, title, text), queries.jsonl (_id, text), qrels/<split>.tsv."""
    qrels_path = folder / "qrels" / f"{split}.tsv"
    for p in (folder / "corpus.jsonl", folder / "queries.jsonl", qrels_path):
        if not p.is_file():
            have = sorted(x.stem for x in (folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
            raise ValueError(f"BEIR folder {str(folder)!r} lacks {p.relative_to(folder)} (qrels splits here: {have})")
    qrels: dict[str, dict[str, int]] = {}
    with qrels_path.open(encoding="utf-8") as fh:
        for n, row in enumerate(csv.reader(fh, delimiter="\t")):
            if n == 0 and row and not row[-1].strip().lstrip("-").isdigit():
                continue  # header
            if len(row) >= 3:
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    queries = {str(q["_id"]): str(q["text"]) for q in _jsonl(folder / "queries.jsonl") if str(q["_id"]) in qrels}
    # An untitled document would get its key as title, and "beir:123" would reach BM25 and the embedder.
    corpus = tuple(Record(key=f"beir:{d['_id']}", title=str(d.get("title") or "") or _snippet_title(str(d["text"])),
                          text=str(d.get("text") or "")) for d in _jsonl(folder / "corpus.jsonl"))
    return BeirData(folder.name, corpus, queries, {q: r for q, r in qrels.items() if q in queries})
