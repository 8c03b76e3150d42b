"""The live model on the human side: labelers chat with a model version the project allows,
and staff turn model-written messages of those chats into ranking tasks (ChatGPT's recipe)."""
