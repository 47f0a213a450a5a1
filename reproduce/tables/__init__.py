"""The paper's tables: their rows as data (`rows`) and the runner that trains and scores them (`runner`)."""
