-- What choosing a new NIC's address costs on PostgreSQL in a network holding 100,000 addresses
-- (issue 21): the count the choice made before ip_cursors (migration 0038), against the cursor's
-- upsert that replaced it. Temporary tables only: nothing is left behind.
--
--   psql -h 127.0.0.1 -U postgres -d postgres -f bench/ip_count_vs_cursor.sql
--
-- Each statement runs three times; read the "Execution Time" lines.
CREATE TEMP TABLE ip_addresses (id serial PRIMARY KEY, network_id int NOT NULL, address varchar(64) NOT NULL,
                                nic_id int, router_id int, allocated timestamp, UNIQUE (network_id, address));
CREATE TEMP TABLE ip_cursors (network_id int PRIMARY KEY, next_offset int NOT NULL);
INSERT INTO ip_addresses (network_id, address)
    SELECT 1, '10.' || (i / 65536) || '.' || ((i / 256) % 256) || '.' || (i % 256) FROM generate_series(1, 100000) i;
INSERT INTO ip_cursors VALUES (1, 100001);
VACUUM ANALYZE ip_addresses;
VACUUM ANALYZE ip_cursors;
\echo before: the addresses of the network counted
EXPLAIN (ANALYZE, BUFFERS) SELECT count(*) FROM ip_addresses WHERE network_id = 1;
EXPLAIN (ANALYZE, BUFFERS) SELECT count(*) FROM ip_addresses WHERE network_id = 1;
EXPLAIN (ANALYZE, BUFFERS) SELECT count(*) FROM ip_addresses WHERE network_id = 1;
\echo now: the cursor taken
EXPLAIN (ANALYZE, BUFFERS) INSERT INTO ip_cursors (network_id, next_offset) VALUES (1, 1)
    ON CONFLICT (network_id) DO UPDATE SET next_offset = ip_cursors.next_offset + 1 RETURNING next_offset;
EXPLAIN (ANALYZE, BUFFERS) INSERT INTO ip_cursors (network_id, next_offset) VALUES (1, 1)
    ON CONFLICT (network_id) DO UPDATE SET next_offset = ip_cursors.next_offset + 1 RETURNING next_offset;
EXPLAIN (ANALYZE, BUFFERS) INSERT INTO ip_cursors (network_id, next_offset) VALUES (1, 1)
    ON CONFLICT (network_id) DO UPDATE SET next_offset = ip_cursors.next_offset + 1 RETURNING next_offset;
