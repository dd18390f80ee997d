"""Every GraphQL document the connector sends: the shape the official client was captured sending
(wandb 0.31.0, as captured from its traffic), and valid against the emulator's schema.
"""

from __future__ import annotations

import pytest
from graphql import OperationDefinitionNode, parse, print_ast, validate

from connector.emulator.graphql_app import load_schema
from connector.remote.queries import OPERATION_NAMES, document, names

# name -> (operation name in the document, {variable: type}, root path, leaf field and its arguments)
CAPTURED = {
    "viewer": ("Viewer", {}, ["viewer"], ("teams", set())),
    "default_entity": ("GetDefaultEntity", {}, ["viewer"], ("entity", set())),
    "run": ("Run", {"project": "String!", "entity": "String!", "name": "String!"},
            ["project", "run"], ("historyKeys", set())),
    "run_history_keys": ("RunHistoryKeys", {"project": "String!", "entity": "String!",
                                            "name": "String!"}, ["project", "run"],
                         ("historyKeys", set())),
    "history_page": ("HistoryPage", {"entity": "String!", "project": "String!", "run": "String!",
                                     "minStep": "Int64!", "maxStep": "Int64!", "pageSize": "Int!"},
                     ["project", "run"], ("history", {"minStep", "maxStep", "samples"})),
    "sampled_history_page": ("SampledHistoryPage", {"entity": "String!", "project": "String!",
                                                    "run": "String!", "spec": "JSONString!"},
                             ["project", "run"], ("sampledHistory", {"specs"})),
    "sampled_history": ("RunSampledHistory", {"project": "String!", "entity": "String!",
                                              "name": "String!", "specs": "[JSONString!]!"},
                        ["project", "run"], ("sampledHistory", {"specs"})),
    "full_history": ("RunFullHistory", {"project": "String!", "entity": "String!",
                                        "name": "String!", "samples": "Int"},
                     ["project", "run"], ("history", {"samples"})),
    "full_events": ("RunFullHistory", {"project": "String!", "entity": "String!",
                                       "name": "String!", "samples": "Int"},
                    ["project", "run"], ("events", {"samples"})),
    "parquet_history": ("RunParquetHistory", {"entity": "String!", "project": "String!",
                                              "runName": "String!", "liveKeys": "[String!]!"},
                        ["project", "run"], ("parquetHistory", {"liveKeys"})),
    "runs": ("Runs", {"project": "String!", "entity": "String!", "cursor": "String",
                      "perPage": "Int", "order": "String", "filters": "JSONString"},
             ["project", "runs"], ("pageInfo", set())),
    "run_files": ("RunFiles", {"project": "String!", "entity": "String!", "name": "String!",
                               "fileCursor": "String", "fileLimit": "Int", "fileNames": "[String]",
                               "upload": "Boolean", "pattern": "String"},
                  ["project", "run"], ("files", {"names", "after", "first", "pattern"})),
    "run_output_artifacts": ("RunOutputArtifacts", {"entity": "String!", "project": "String!",
                                                    "run": "String!", "cursor": "String",
                                                    "perPage": "Int", "includeAliases": "Boolean"},
                             ["project", "run"], ("outputArtifacts", {"after", "first"})),
    "run_input_artifacts": ("RunInputArtifacts", {"entity": "String!", "project": "String!",
                                                  "run": "String!", "cursor": "String",
                                                  "perPage": "Int", "includeAliases": "Boolean"},
                            ["project", "run"], ("inputArtifacts", {"after", "first"})),
}


def test_every_document_is_covered() -> None:
    assert sorted(CAPTURED) == names()


@pytest.mark.parametrize("name", sorted(CAPTURED))
def test_document_shape_matches_the_capture(name: str) -> None:
    op_name, variables, path, (leaf, leaf_args) = CAPTURED[name]
    ast = parse(document(name))
    op = next(d for d in ast.definitions if isinstance(d, OperationDefinitionNode))
    assert op.name.value == op_name
    assert {v.variable.name.value: print_ast(v.type) for v in op.variable_definitions or ()} == variables
    selections = op.selection_set.selections
    for field_name in path:
        field = next(s for s in selections if getattr(s, "name", None) and s.name.value == field_name)
        selections = field.selection_set.selections if field.selection_set else []
    text = document(name)
    assert leaf in text
    for arg in leaf_args:
        assert f"{arg}:" in text.replace(" :", ":")
    # Go-owned documents go out with their operation name, Python-owned ones with "" (as captured).
    go_owned = {"viewer", "history_page", "sampled_history_page", "parquet_history"}
    assert (OPERATION_NAMES.get(name, "") != "") == (name in go_owned)


@pytest.mark.parametrize("name", sorted(CAPTURED))
def test_document_validates_against_the_emulator_schema(name: str) -> None:
    assert validate(load_schema(), parse(document(name))) == []
