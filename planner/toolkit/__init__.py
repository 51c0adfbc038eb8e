"""The domain author's toolkit: the helpers that ppdpp's own domain plugins use, public for third-party ones.

Reading critic outputs (:mod:`.parsing`), building role-play prompts (:mod:`.chat`), reading dataset files with
errors that name the file and line (:mod:`.datafiles`), and a base class for domains whose cases are PPDPP-style
dialogue files (:mod:`.dialog_data`). docs/toolkit.md lists every name with its signature::

    from ppdpp.planner.toolkit import parse_choice, read_jsonl, role_play_messages
"""

from __future__ import annotations

from ppdpp.planner.toolkit.chat import history_messages, merge_consecutive, role_play_messages
from ppdpp.planner.toolkit.datafiles import (
    DomainData,
    bundled_path,
    cell_of,
    domain_data,
    field_of,
    lazy_data_root,
    read_good_rows,
    read_jsonl,
    read_rows,
    require_file,
    resolve_data_dir,
    skipped_lines,
)
from ppdpp.planner.toolkit.dialog_data import DialogDataDomain
from ppdpp.planner.toolkit.parsing import (
    KeywordHit,
    PriceMention,
    answer_part,
    denies,
    extract_prices,
    find_keywords,
    find_prices,
    parse_choice,
    states,
    words_of,
)

__all__ = [
    # parsing: which answer an LLM output states, and which prices it names
    "parse_choice",
    "answer_part",
    "find_keywords",
    "KeywordHit",
    "states",
    "denies",
    "words_of",
    "find_prices",
    "PriceMention",
    "extract_prices",
    # chat: OpenAI-style messages for a role-playing LLM
    "role_play_messages",
    "history_messages",
    "merge_consecutive",
    # datafiles: finding and reading dataset files
    "resolve_data_dir",
    "domain_data",
    "DomainData",
    "require_file",
    "read_jsonl",
    "field_of",
    "bundled_path",
    "read_rows",
    "read_good_rows",
    "cell_of",
    "lazy_data_root",
    "skipped_lines",
    # dialog_data: domains whose cases are PPDPP-style dialogue files
    "DialogDataDomain",
]
