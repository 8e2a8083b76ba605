"""The pipeline definition (see README: Architecture)."""


def __getattr__(name: str):
    # The data gate's artifact type is named "pipeline.DataGateResult" (KFP allows only
    # `namespace.Name` titles), and Vertex AI's executor entrypoint imports an artifact's class
    # from its type name: it must resolve here. Lazily, so that importing `pipeline.errors`
    # does not import TFX.
    if name == "DataGateResult":
        from pipeline.gate import DataGateResult

        return DataGateResult
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
