"""Ollama's API surface, translated onto the engines' OpenAI API and back."""
