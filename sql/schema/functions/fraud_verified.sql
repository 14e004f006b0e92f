-- Codes reported entered: counted for their prefix and country in p_now's minute, and their users
-- remembered as known (fraud.trust_verified_days).
CREATE OR REPLACE FUNCTION sms.fraud_verified(p_now timestamp with time zone, p_phone_keys text[], p_users text[]) RETURNS void
    LANGUAGE sql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    INSERT INTO sms.fraud_verifications AS c (scope, key, minute, verified)
    SELECT x.scope, x.key, date_trunc('minute', p_now), count(*)
    FROM (SELECT 'prefix' AS scope, sms.phone_prefix(k) AS key FROM unnest(p_phone_keys) k
          UNION ALL
          SELECT 'country', sms.phone_country(k) FROM unnest(p_phone_keys) k) x
    GROUP BY x.scope, x.key
    ORDER BY x.scope, x.key
    ON CONFLICT (scope, key, minute) DO UPDATE SET verified = c.verified + EXCLUDED.verified;
    INSERT INTO sms.fraud_trusted AS t (user_ref, verified_at)
    SELECT DISTINCT left(u, 200), p_now FROM unnest(p_users) u WHERE NULLIF(u, '') IS NOT NULL
    ORDER BY 1
    ON CONFLICT (user_ref) DO UPDATE SET verified_at = greatest(t.verified_at, EXCLUDED.verified_at);
$$;
