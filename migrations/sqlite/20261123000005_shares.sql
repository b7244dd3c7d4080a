-- Share links: a signed, expiring, read-only URL to one image; revoked by setting revoked_at.
CREATE TABLE shares (
    id          TEXT PRIMARY KEY NOT NULL,
    image_id    TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    account_id  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX shares_by_image ON shares (image_id);
