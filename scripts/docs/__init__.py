"""Documentation tools: the generated reference pages and the screenshots."""
