"""The commands' one rule for their videos: ``--data``, ``--split``, ``--test-data`` and ``--test-split``.

``train.py`` and ``eval.py`` name their data alike and fall back alike on a checkpoint's run
and on the embedded demo data; :func:`resolve_data` says which videos a command line means,
in the command line's words. Loading them is the pipelines' work (``load_index``,
``load_pair``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class DataChoice:
    """Where a command's training and test videos come from (:func:`resolve_data`).

    ``data`` is ``None`` for the embedded demo data (generated on first use by
    :func:`motionssl.pipelines.demo.generate`); ``source`` says in words where the choice
    came from, for the command's log.
    """

    data: Optional[str]
    split: Optional[str]
    test_data: Optional[str]
    test_split: Optional[str]
    source: str

    @property
    def demo(self) -> bool:
        return self.data is None

    @property
    def has_test(self) -> bool:
        return bool(self.test_data or self.test_split)


def resolve_data(data: Optional[str] = None, split: Optional[str] = None, test_data: Optional[str] = None,
                 test_split: Optional[str] = None, *, saved: Optional[dict] = None,
                 need_test: bool = False) -> DataChoice:
    """The one rule by which ``train.py`` and ``eval.py`` choose their videos.

    * ``data`` given: it and the splits as given;
    * only ``test_data`` given: those test videos against the training videos of ``saved``
      (a run's config: ``data``, ``split``, ``test_data``, ``test_split``);
    * nothing given and a ``saved`` run with data: the run's data and test videos, a
      given split replacing the run's;
    * no data anywhere: the embedded demo data, splits ``train`` and ``test``.

    Splits name splits of a prepared dataset, so splits without any data are an error, as
    is ``need_test`` (an evaluation) without test videos.
    """
    saved_data = (saved or {}).get("data")
    if data:
        choice = DataChoice(data, split, test_data, test_split, "the arguments")
    elif test_data:
        if not saved_data:
            raise ValueError("--test-data gives the test videos; give the training videos (the gallery) with --data")
        choice = DataChoice(saved_data, split or saved.get("split"), test_data, test_split,
                            "the checkpoint's training videos and --test-data")
    elif saved_data:
        choice = DataChoice(saved_data, split or saved.get("split"), saved.get("test_data"),
                            test_split or saved.get("test_split"), "the checkpoint's run")
        if need_test and not choice.has_test:
            raise ValueError(f"the checkpoint was trained on {saved_data} without test videos: give --test-split "
                             "(a split of that dataset) or --test-data")
    elif split not in (None, "train") or test_split not in (None, "test"):
        raise ValueError(f"--split/--test-split ({split or test_split}) name splits of --data: give --data too "
                         "(the demo data has the splits train and test)")
    else:
        choice = DataChoice(None, "train", None, "test", "the demo data")
    if need_test and not choice.has_test:
        raise ValueError(f"no test videos to evaluate on in {choice.data}: give --test-split (a split of --data) "
                         "or --test-data")
    return choice
