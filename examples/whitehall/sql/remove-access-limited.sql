-- Remove access-limited (unpublished) editions and everything that hangs off them, children first
-- (the foreign keys would refuse anything else, and a refusal stops the whole sanitisation).
-- A document left with no edition at all existed only as access-limited drafts: it goes too.

CREATE TEMPORARY TABLE limited_editions (id INT PRIMARY KEY)
  SELECT id FROM editions WHERE access_limited = 1;

DELETE g FROM govspeak_contents g
  JOIN attachments a ON a.id = g.attachment_id
  JOIN limited_editions l ON l.id = a.attachable_id;

CREATE TEMPORARY TABLE limited_files (id INT PRIMARY KEY)
  SELECT DISTINCT a.attachment_data_id AS id FROM attachments a
  JOIN limited_editions l ON l.id = a.attachable_id
  WHERE a.attachment_data_id IS NOT NULL;

DELETE a FROM attachments a JOIN limited_editions l ON l.id = a.attachable_id;

-- A file is shared between editions of a document; delete only files nothing else uses now.
DELETE d FROM attachment_data d JOIN limited_files f ON f.id = d.id
  WHERE NOT EXISTS (SELECT 1 FROM attachments a WHERE a.attachment_data_id = d.id);

DELETE t FROM edition_translations t JOIN limited_editions l ON l.id = t.edition_id;
DELETE x FROM edition_authors x JOIN limited_editions l ON l.id = x.edition_id;
DELETE f FROM fact_check_requests f JOIN limited_editions l ON l.id = f.edition_id;
DELETE i FROM access_limiting_individuals i JOIN limited_editions l ON l.id = i.edition_id;
DELETE v FROM versions v JOIN limited_editions l ON l.id = v.item_id WHERE v.item_type = 'Edition';
DELETE e FROM editions e JOIN limited_editions l ON l.id = e.id;

DELETE d FROM documents d WHERE NOT EXISTS (SELECT 1 FROM editions e WHERE e.document_id = d.id);

DROP TEMPORARY TABLE limited_files;
DROP TEMPORARY TABLE limited_editions;
