"""ChatbotMobile: the client of its contract, FAQ import parsing, and the task bodies."""
