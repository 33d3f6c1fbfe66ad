"""Bad uploads sent to the running app: each gets its message, and the next valid request works."""

from __future__ import annotations

import pytest
from gradio_client import handle_file

from tabs._examples import example_paths
from tests.test_image_decoder import BAD_INPUTS

MODEL = "depth-anything-v2-small"  # the cheapest model endpoint that takes an image


@pytest.mark.parametrize(("case", "make", "message"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_upload_through_the_api_then_a_valid_one(client, case, make, message, tmp_path):
    bad = tmp_path / "upload.png"
    bad.write_bytes(make())
    with pytest.raises(Exception) as info:
        client.predict(handle_file(str(bad)), MODEL, api_name="/depth")
    text = str(info.value)
    assert message.lower() in text.lower(), text
    assert "Traceback" not in text and str(tmp_path) not in text
    _, stats, _ = client.predict(handle_file(example_paths()[0]), MODEL, api_name="/depth")
    assert stats["kind"] == "relative_inverse"
