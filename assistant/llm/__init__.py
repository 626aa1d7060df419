"""LLM providers: extractive (offline default); bedrock and openai-compatible come later."""
