"""How messages name factors: one helper each for errors and for warnings, names escaped."""
import numpy as np
import pytest

from disentangle_eval import DataError
from disentangle_eval._messages import display_text, factor_label, factor_name
from disentangle_eval._split import require_two_classes, split_warnings

HOSTILE = "size\x1b[2J\nrm"


def test_factor_label_and_name():
    assert factor_label(3, None) == "column 3"
    assert factor_label(1, ["a", HOSTILE]) == "'size\\x1b[2J\\nrm' (column 1)"
    assert factor_name(3, None) == "factor 3"
    assert factor_name(1, ["a", HOSTILE]) == display_text(HOSTILE) == "size\\x1b[2J\\nrm"


def test_split_messages_escape_factor_names():
    y_train = np.array([[0, 1], [1, 1], [0, 1]])
    with pytest.raises(DataError, match=r"^factor 'size\\x1b\[2J\\nrm' \(column 1\) takes a "
                                        r"single value in the 3 training rows"):
        require_two_classes(y_train, "contiguous", ["a", HOSTILE])
    messages = split_warnings(np.array([[0, 0], [1, 1]]), np.array([[0, 2], [0, 2]]),
                              "contiguous", ["a", HOSTILE])
    assert messages[0].endswith("a (1 of 2 values), size\\x1b[2J\\nrm (2 of 2 values); the "
                                "test accuracy covers only part of each factor's range "
                                "(split='random' avoids this for data stored in factor order)")
    assert "\x1b" not in " ".join(messages)
