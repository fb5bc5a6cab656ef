"""wasmtx example in Python: the original scenario. One user row is inserted into the
`user` table of every participant, atomically: either every database gets it or none
does."""

import wasmtx


@wasmtx.run
def insert_user(user: dict) -> dict:
    username, password = user.get("username", ""), user.get("password", "")
    if not username:
        raise wasmtx.Abort("username must not be empty")
    participants = wasmtx.participants()
    if not participants:
        raise wasmtx.Abort("no participants")
    for participant in participants:
        dialect = participant.dialect
        try:
            participant.execute(
                f"INSERT INTO {dialect.quote_ident('user')} "
                "(username, password, created_at, updated_at) "
                f"VALUES ({dialect.placeholders(2)}, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
                username,
                password,
            )
        except wasmtx.Error as e:
            raise wasmtx.Abort(
                f"insert into `user` on participant `{participant.name}` failed: {e}"
            ) from None
    wasmtx.info(f"user `{username}` inserted on {len(participants)} participants")
    return {"inserted": len(participants)}
