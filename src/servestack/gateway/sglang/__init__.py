"""SGLang's native API surface, passed through to SGLang services."""
