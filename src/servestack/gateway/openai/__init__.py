"""The OpenAI API surface: its routes, the request shaped for each engine, the answer relayed byte for byte."""
