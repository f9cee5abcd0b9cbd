import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import FrozenInstanceError

import pytest

from retrieval.analyzer import Analyzer, load_stopwords


def test_english_is_stop_filtered_and_stemmed() -> None:
    toks = Analyzer().tokenize("The dogs were RUNNING to the stations, quickly!")
    assert toks == ["dog", "run", "station", "quick"]
    assert Analyzer(stem=False).tokenize("The dogs were running") == ["dogs", "running"]
    assert Analyzer(stopwords=False, stem=False).tokenize("The dogs") == ["the", "dogs"]
    assert Analyzer().tokenize("don't it's") == []  # contraction fragments are stopwords too


def test_model_codes_and_numbers_survive() -> None:
    a = Analyzer()
    assert a.tokenize("E4") == ["e4"]
    # A hyphenated code yields its parts and the joined form, so "KFR35GW" in a query still finds it.
    assert a.tokenize("KFR-35GW") == ["kfr", "35gw", "kfr35gw"]
    assert set(a.tokenize("kfr35gw")) <= set(a.tokenize("KFR-35GW"))
    assert a.tokenize("costs 1,000 yuan, version 3.5") == ["cost", "1000", "yuan", "version", "3.5"]
    assert a.tokenize("covid-19 in 2024") == ["covid", "19", "covid19", "2024"]
    assert a.tokenize("state-of-the-art") == ["state", "art"]  # no joined form without a digit


def test_nfkc_folds_full_width_forms() -> None:
    a = Analyzer()
    assert a.tokenize("ＫＦＲ－３５ＧＷ　Ｅ４") == a.tokenize("KFR-35GW E4")


def test_chinese_is_segmented_and_stop_filtered() -> None:
    a = Analyzer(cjk_mode="exact")
    toks = a.tokenize("空调显示E4故障代码，我们的售后服务中心会联系您。")
    assert toks == ["空调", "显示", "e4", "故障", "代码", "售后服务", "中心", "联系"]
    assert "的" not in toks and "，" not in toks and "我们" not in toks


def test_search_mode_adds_sub_words() -> None:
    exact = Analyzer(cjk_mode="exact").tokenize("中华人民共和国成立")
    search = Analyzer(cjk_mode="search").tokenize("中华人民共和国成立")
    assert "中华人民共和国" in exact and "人民" not in exact
    assert {"中华", "人民", "共和国", "中华人民共和国", "成立"} <= set(search)
    assert Analyzer().cjk_mode == "search"


def test_mixed_text_keeps_both_scripts() -> None:
    toks = Analyzer().tokenize("Error E4：压缩机过热 when the pumps stopped")
    assert toks[:2] == ["error", "e4"] and toks[-2:] == ["pump", "stop"]
    assert "压缩机" in toks and "过热" in toks


def test_value_semantics_and_argument_checks() -> None:
    a = Analyzer()
    assert a == Analyzer() and hash(a) == hash(Analyzer())
    with pytest.raises(FrozenInstanceError):
        a.stem = False  # type: ignore[misc]
    with pytest.raises(ValueError, match="'fast'"):
        Analyzer(cjk_mode="fast")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bytes"):
        a.tokenize(b"abc")  # type: ignore[arg-type]
    assert a.tokenize("") == [] and a.tokenize(" ，。!? ") == []


def test_stopword_lists_are_real_lists() -> None:
    en, zh = load_stopwords("en"), load_stopwords("zh")
    assert len(en) > 120 and len(zh) > 150
    assert {"the", "and", "of", "is"} <= en and {"的", "了", "是", "什么"} <= zh
    assert not any(w.startswith("#") or w != w.strip() for w in en | zh)


def test_thread_safe() -> None:
    texts = [f"The {i} running pumps 空调故障{i} KFR-{i}GW" for i in range(200)]
    a = Analyzer()
    expected = [a.tokenize(t) for t in texts]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(a.tokenize, texts)) == expected


@pytest.mark.slow  # a fresh interpreter loading jieba's dictionary
def test_import_is_cheap_and_jieba_is_quiet() -> None:
    code = textwrap.dedent(
        """
        import sys
        import retrieval.analyzer as an
        assert "jieba" not in sys.modules, "jieba imported at import time"
        a = an.Analyzer()
        assert "jieba" not in sys.modules, "jieba imported by the constructor"
        print(a.tokenize("空调故障"))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['空调', '故障']"
    assert "prefix dict" not in out.stderr and out.stderr.strip() == ""
