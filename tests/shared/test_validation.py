"""One formatter of pydantic errors: the same path syntax for config files, frames and HTTP bodies."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import Problem
from shared.validation import join_path, validation_problems, validation_report


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Register(_Strict):
    address: int = Field(ge=0, le=65535)
    poll_interval: float = 1.0


class Modbus(_Strict):
    kind: Literal["modbus"]
    registers: list[Register]


class Opcua(_Strict):
    kind: Literal["opcua"]
    url: str


class Inline(_Strict):
    format: Literal["stl", "obj"]


class Part(_Strict):
    mesh: str | Inline
    tags: dict[str, int] = {}


class Root(_Strict):
    sources: list[Annotated[Modbus | Opcua, Field(discriminator="kind")]] = []
    parts: list[Part] = []


def problems(data: object) -> list[Problem]:
    with pytest.raises(ValidationError) as info:
        Root.model_validate(data)
    return validation_problems(info.value, Root)


def test_paths_are_dotted_keys_with_list_positions_in_brackets() -> None:
    data = {"sources": [{"kind": "opcua", "url": "x"}, {"kind": "opcua", "url": "y"},
                        {"kind": "modbus", "registers": [{"address": 70000}]}]}
    assert problems(data) == [Problem("sources[2].registers[0].address",
                                      "Input should be less than or equal to 65535 (got 70000)")]


def test_union_labels_and_tags_are_left_out_of_the_path() -> None:
    found = problems({"parts": [{"mesh": {"format": "dwg"}, "tags": {"a": "x"}}]})
    assert [p.path for p in found] == ["parts[0].mesh", "parts[0].mesh.format", "parts[0].tags.a"]


def test_unknown_keys_get_a_suggestion_and_missing_ones_say_so() -> None:
    found = problems({"sources": [{"kind": "modbus", "registers": [{"adress": 1, "pol_interval": 2}]}]})
    assert found == [
        Problem("sources[0].registers[0].address", "required key is missing"),
        Problem("sources[0].registers[0].adress", "unknown key; did you mean 'address'?"),
        Problem("sources[0].registers[0].pol_interval", "unknown key; did you mean 'poll_interval'?"),
    ]


def test_an_unknown_kind_names_the_known_ones() -> None:
    assert problems({"sources": [{"kind": "profibus"}]}) == [
        Problem("sources[0]", "unknown 'kind' 'profibus'; expected one of 'modbus', 'opcua'")]


def test_broken_json_is_reported_without_a_path() -> None:
    with pytest.raises(ValidationError) as info:
        Root.model_validate_json('{"parts": [}')
    [problem] = validation_problems(info.value, Root)
    assert problem.path == "" and problem.message.startswith("not valid JSON: ")


def test_a_config_file_report_adds_the_line_of_the_key() -> None:
    text = 'sources = []\n\n[[parts]]\nmesh = "a.stl"\ntagz = {}\n'
    with pytest.raises(ValidationError) as info:
        Root.model_validate({"sources": [], "parts": [{"mesh": "a.stl", "tagz": {}}]})
    assert validation_report(info.value, Root, text) == ["line 5: parts[0].tagz: unknown key; did you mean 'tags'?"]


def test_long_values_are_cut_and_prefixes_join_like_paths() -> None:
    with pytest.raises(ValidationError) as info:
        Register.model_validate({"address": "x" * 500})
    [problem] = validation_problems(info.value, Register, prefix="[3]")
    assert problem.path == "[3].address" and problem.message.endswith("x...)") and len(problem.message) < 150
    assert (join_path("[3]", "[0].a"), join_path("", "a"), join_path("frames", "")) == ("[3][0].a", "a", "frames")
