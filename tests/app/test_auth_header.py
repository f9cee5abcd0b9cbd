"""The Authorization header: any whitespace after "Bearer", and a precise 401 for each way it can be wrong.

Issue 11, finding 6: `Bearer<TAB>key` was answered "missing API key". Parsing is a function of the header's text;
one real server checks that the answers reach the client as they should.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from app.errors import Unauthorized
from tests.support import free_port, start_server

KEY = "k-7f3a9"


@pytest.mark.parametrize("header", [f"Bearer {KEY}", f"Bearer\t{KEY}", f"bearer   {KEY}", f"BEARER \t {KEY} ",
                                    f"  Bearer {KEY}"])
def test_bearer_with_any_whitespace(header: str) -> None:
    from app.api.auth import bearer_token

    assert bearer_token(header) == KEY


@pytest.mark.parametrize(("header", "says"), [
    (None, "missing API key"),
    ("", "missing API key"),
    ("   ", "missing API key"),
    ("Bearer", "no key after 'Bearer'"),
    ("Bearer \t ", "no key after 'Bearer'"),
    (f"Basic {KEY}", "unsupported authorization scheme 'Basic'"),
    (KEY, "no 'Bearer' scheme"),
    (f"Bearer{KEY}", "no 'Bearer' scheme"),
])
def test_malformed_headers_say_what_is_wrong(header: str | None, says: str) -> None:
    from app.api.auth import bearer_token

    with pytest.raises(Unauthorized) as e:
        bearer_token(header)
    assert says in str(e.value) and "Authorization: Bearer <key>" in str(e.value)
    if header and header.strip() != "Bearer":
        assert KEY not in str(e.value)  # what may be the key is never echoed


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("auth") / "data"
    port = free_port()
    proc = start_server(data, port, {"RAGQA_LLM_BASE_URL": "http://127.0.0.1:9/v1", "RAGQA_EMBEDDED_WORKER": "false",
                                     "RAGQA_API_KEYS": f'{{"admin": "{KEY}"}}'})
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.slow
def test_a_tab_after_bearer_on_a_real_server(server: str) -> None:
    ok = httpx.get(f"{server}/collections", headers={"Authorization": f"Bearer\t{KEY}"}, timeout=10)
    assert ok.status_code == 200, ok.text
    bad = httpx.get(f"{server}/collections", headers={"Authorization": f"Token {KEY}"}, timeout=10)
    assert bad.status_code == 401 and "unsupported authorization scheme 'Token'" in bad.json()["detail"]
    wrong = httpx.get(f"{server}/collections", headers={"Authorization": "Bearer\tnot-the-key"}, timeout=10)
    assert wrong.status_code == 401 and wrong.json()["detail"] == "invalid API key"
