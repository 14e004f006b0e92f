-- A client's key: its IPv4 address, or its IPv6 /64 (one subscriber's allocation: rotating addresses
-- inside it is free, so counting single IPv6 addresses would limit nothing). An IPv4-mapped address
-- (::ffff:a.b.c.d, what dual-stack servers report for IPv4 clients) is its IPv4 address: as a /64 every
-- IPv4 client would be one.
CREATE OR REPLACE FUNCTION sms.client_key(p_ip inet) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT CASE WHEN family(p_ip) = 4 THEN host(p_ip)
                WHEN p_ip << '::ffff:0:0/96'::inet THEN host('0.0.0.0'::inet + (host(p_ip)::inet - '::ffff:0:0'::inet))
                ELSE network(set_masklen(p_ip, 64))::text END
$$;
