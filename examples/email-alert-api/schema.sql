-- A subscription service that emails people when pages they follow change (PostgreSQL).
-- Written for dataferry's examples from the description of GOV.UK's Email Alert API: subscribers,
-- the lists they subscribe to, and the emails sent to them, whose subject and body contain the
-- recipient's address (unsubscribe links, "this email was sent to ...").

CREATE TABLE subscriber_lists (
  id          bigserial PRIMARY KEY,
  title       varchar(255) NOT NULL,
  slug        varchar(255) NOT NULL UNIQUE,
  url         varchar(255),
  tags        jsonb NOT NULL DEFAULT '{}',
  links       jsonb NOT NULL DEFAULT '{}',
  created_at  timestamp NOT NULL,
  updated_at  timestamp NOT NULL
);

CREATE TABLE subscribers (
  id               bigserial PRIMARY KEY,
  address          varchar(255) NOT NULL UNIQUE,
  govuk_account_id varchar(255) UNIQUE,
  created_at       timestamp NOT NULL,
  updated_at       timestamp NOT NULL,
  deactivated_at   timestamp
);

CREATE TABLE subscriptions (
  id                 bigserial PRIMARY KEY,
  subscriber_id      bigint NOT NULL REFERENCES subscribers (id),
  subscriber_list_id bigint NOT NULL REFERENCES subscriber_lists (id),
  frequency          varchar(16) NOT NULL DEFAULT 'immediately',
  source             varchar(32) NOT NULL DEFAULT 'user_signed_up',
  created_at         timestamp NOT NULL,
  ended_at           timestamp,
  ended_reason       varchar(32)
);

CREATE TABLE emails (
  id            uuid PRIMARY KEY,
  address       varchar(255) NOT NULL,
  subject       text NOT NULL,
  body          text NOT NULL,
  subscriber_id bigint REFERENCES subscribers (id),
  status        varchar(16) NOT NULL DEFAULT 'pending',
  created_at    timestamp NOT NULL,
  sent_at       timestamp
);
CREATE INDEX emails_address ON emails (address);

-- Each send attempt of an email; removed with its email.
CREATE TABLE delivery_attempts (
  id                 uuid PRIMARY KEY,
  email_id           uuid NOT NULL REFERENCES emails (id) ON DELETE CASCADE,
  status             varchar(32) NOT NULL,
  provider_reference varchar(255),
  created_at         timestamp NOT NULL
);

-- Short-lived sign-in tokens for managing subscriptions; never worth copying.
CREATE TABLE auth_tokens (
  id         bigserial PRIMARY KEY,
  address    varchar(255) NOT NULL,
  token      varchar(255) NOT NULL,
  created_at timestamp NOT NULL
);
