-- A publishing application's content store (MySQL/MariaDB), written for dataferry's examples from
-- the description of GOV.UK's Whitehall publisher: documents have editions; an edition can be
-- access-limited (a draft only its organisation may see, e.g. an unannounced policy), and
-- translations, attachments (with their files and HTML bodies), fact-check requests, authors,
-- named individuals with access, and history rows all hang off an edition.

CREATE TABLE users (
  id                INT AUTO_INCREMENT PRIMARY KEY,
  name              VARCHAR(255) NOT NULL,
  email             VARCHAR(255) NOT NULL UNIQUE,
  uid               VARCHAR(64) UNIQUE,
  organisation_slug VARCHAR(255),
  created_at        DATETIME NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE documents (
  id           INT AUTO_INCREMENT PRIMARY KEY,
  content_id   CHAR(36) NOT NULL UNIQUE,
  slug         VARCHAR(255) NOT NULL,
  document_type VARCHAR(64) NOT NULL,
  created_at   DATETIME NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE editions (
  id             INT AUTO_INCREMENT PRIMARY KEY,
  document_id    INT NOT NULL,
  state          VARCHAR(32) NOT NULL,
  access_limited TINYINT(1) NOT NULL DEFAULT 0,
  major_change_published_at DATETIME,
  created_at     DATETIME NOT NULL,
  CONSTRAINT editions_document FOREIGN KEY (document_id) REFERENCES documents (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE edition_translations (
  id         INT AUTO_INCREMENT PRIMARY KEY,
  edition_id INT NOT NULL,
  locale     VARCHAR(8) NOT NULL,
  title      VARCHAR(255),
  summary    TEXT,
  body       MEDIUMTEXT,
  CONSTRAINT translations_edition FOREIGN KEY (edition_id) REFERENCES editions (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE edition_authors (
  id         INT AUTO_INCREMENT PRIMARY KEY,
  edition_id INT NOT NULL,
  user_id    INT NOT NULL,
  CONSTRAINT authors_edition FOREIGN KEY (edition_id) REFERENCES editions (id),
  CONSTRAINT authors_user FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE attachment_data (
  id               INT AUTO_INCREMENT PRIMARY KEY,
  carrierwave_file VARCHAR(255) NOT NULL,
  content_type     VARCHAR(255),
  file_size        INT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE attachments (
  id                 INT AUTO_INCREMENT PRIMARY KEY,
  attachable_id      INT NOT NULL,
  title              VARCHAR(255) NOT NULL,
  attachment_data_id INT,
  CONSTRAINT attachments_edition FOREIGN KEY (attachable_id) REFERENCES editions (id),
  CONSTRAINT attachments_data FOREIGN KEY (attachment_data_id) REFERENCES attachment_data (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE govspeak_contents (
  id            INT AUTO_INCREMENT PRIMARY KEY,
  attachment_id INT NOT NULL,
  body          MEDIUMTEXT,
  CONSTRAINT govspeak_attachment FOREIGN KEY (attachment_id) REFERENCES attachments (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE fact_check_requests (
  id            INT AUTO_INCREMENT PRIMARY KEY,
  edition_id    INT NOT NULL,
  requestor_id  INT,
  email_address VARCHAR(255) NOT NULL,
  `key`         VARCHAR(255) NOT NULL UNIQUE,
  comments      TEXT,
  instructions  TEXT,
  created_at    DATETIME NOT NULL,
  CONSTRAINT fact_checks_edition FOREIGN KEY (edition_id) REFERENCES editions (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE access_limiting_individuals (
  id         INT AUTO_INCREMENT PRIMARY KEY,
  edition_id INT NOT NULL,
  email      VARCHAR(255) NOT NULL,
  CONSTRAINT individuals_edition FOREIGN KEY (edition_id) REFERENCES editions (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Audit history: a serialised copy of the edition after each change.
CREATE TABLE versions (
  id         INT AUTO_INCREMENT PRIMARY KEY,
  item_type  VARCHAR(64) NOT NULL,
  item_id    INT NOT NULL,
  event      VARCHAR(32) NOT NULL,
  whodunnit  VARCHAR(255),
  object     MEDIUMTEXT,
  created_at DATETIME NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Web sessions of the publishing app's users.
CREATE TABLE sessions (
  id         INT AUTO_INCREMENT PRIMARY KEY,
  session_id VARCHAR(255) NOT NULL,
  data       TEXT,
  updated_at DATETIME
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
