
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_router.h"


/*
 * Throttling of logins, shared by all workers through the zone.
 *
 * Failed logins are counted per login name and per client network
 * ("router_client_prefix": an IPv4 address, an IPv6 /64) within
 * "router_fail_window" from the first failure.  Each failure makes the
 * next refusal wait longer, from
 * "router_auth_delay" doubling up to "router_auth_max_delay"; once a count
 * reaches its limit, every login of that name or from that address is
 * refused, the right password too, until the window ends.  A successful
 * login clears the count of its name.  Trusted networks are never
 * throttled.  Clients only ever see the protocol's ordinary failure reply.
 *
 * Entries are kept most recently used first; stale ones are dropped as
 * new ones come, and when the zone is full the oldest go first, with a
 * warning: a full zone never refuses a login.
 *
 * A client is its network of "router_client_prefix" bits, here and in the
 * session limits (ngx_mail_plus_client_key()).
 */


#define NGX_MAIL_PLUS_THROTTLE_LOGIN    'l'
#define NGX_MAIL_PLUS_THROTTLE_ADDRESS  'a'


typedef struct {
    ngx_str_node_t              sn;        /* sn.str: type and key */
    ngx_queue_t                 queue;
    time_t                      last;      /* last used */
    time_t                      first;     /* first failure of the window */
    ngx_uint_t                  fails;
    time_t                      minute;    /* of the logins counted */
    ngx_uint_t                  logins;
    u_char                      data[1];
} ngx_mail_plus_throttle_node_t;


static ngx_uint_t ngx_mail_plus_throttle_key(ngx_mail_plus_check_t *check,
    ngx_uint_t type, ngx_str_t *key, u_char *buf);
static ngx_mail_plus_throttle_node_t *ngx_mail_plus_throttle_lookup(
    ngx_mail_plus_zone_t *zone, ngx_str_t *key, ngx_uint_t create,
    ngx_log_t *log);
static ngx_uint_t ngx_mail_plus_throttle_locked(ngx_mail_plus_main_conf_t *mpcf,
    ngx_mail_plus_throttle_node_t *node, ngx_uint_t limit);


void
ngx_mail_plus_throttle_before(ngx_mail_plus_check_t *check)
{
    u_char                          lbuf[NGX_MAIL_PLUS_KEY_LEN];
    u_char                          abuf[NGX_MAIL_PLUS_KEY_LEN];
    ngx_str_t                       lkey, akey;
    ngx_uint_t                      haslogin, hasaddr;
    ngx_mail_plus_zone_t           *zone;
    ngx_mail_plus_route_t          *route;
    ngx_mail_plus_main_conf_t      *mpcf;
    ngx_mail_plus_throttle_node_t  *node;

    mpcf = check->mpcf;
    route = &check->route;

    if (mpcf->shm_zone == NULL || !check->auth.check) {
        return;
    }

    zone = mpcf->shm_zone->data;

    (void) ngx_atomic_fetch_add(&zone->sh->stats.attempts, 1);

    haslogin = ngx_mail_plus_throttle_key(check, NGX_MAIL_PLUS_THROTTLE_LOGIN,
                                          &lkey, lbuf);
    hasaddr = ngx_mail_plus_throttle_key(check,
                                         NGX_MAIL_PLUS_THROTTLE_ADDRESS,
                                         &akey, abuf);

    if (!haslogin && !hasaddr) {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, check->log, 0,
                       "router: throttle: a trusted network");
        return;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (hasaddr && mpcf->address_fails) {
        node = ngx_mail_plus_throttle_lookup(zone, &akey, 0, check->log);

        if (node && ngx_mail_plus_throttle_locked(mpcf, node,
                                                  mpcf->address_fails))
        {
            ngx_str_set(&route->reason,
                        "locked out: too many failures from the address");
            goto locked;
        }
    }

    if (haslogin) {
        node = ngx_mail_plus_throttle_lookup(zone, &lkey, 0, check->log);

        if (node && mpcf->login_fails
            && ngx_mail_plus_throttle_locked(mpcf, node, mpcf->login_fails))
        {
            ngx_str_set(&route->reason,
                        "locked out: too many failures for the login");
            goto locked;
        }

        if (node && mpcf->login_rate
            && route->status == NGX_MAIL_PLUS_ALLOW
            && node->minute + 60 > ngx_time()
            && node->logins >= mpcf->login_rate)
        {
            ngx_shmtx_unlock(&zone->shpool->mutex);

            ngx_log_debug1(NGX_LOG_DEBUG_MAIL, check->log, 0,
                           "router: throttle: %ui logins this minute",
                           node->logins);

            route->status = NGX_MAIL_PLUS_TEMPFAIL;
            route->verify = 0;
            ngx_str_set(&route->reason, "too many logins a minute");
            return;
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return;

locked:

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, check->log, 0,
                   "router: throttle: %V", &route->reason);

    (void) ngx_atomic_fetch_add(&zone->sh->stats.locked, 1);

    route->status = NGX_MAIL_PLUS_DENY;
    route->verify = 0;
    route->delay = mpcf->auth_max_delay;
    route->locked = 1;
}


void
ngx_mail_plus_throttle_after(ngx_mail_plus_check_t *check)
{
    u_char                          lbuf[NGX_MAIL_PLUS_KEY_LEN];
    u_char                          abuf[NGX_MAIL_PLUS_KEY_LEN];
    time_t                          now, delay;
    ngx_str_t                       lkey, akey;
    ngx_uint_t                      i, fails, haslogin, hasaddr;
    ngx_mail_plus_zone_t           *zone;
    ngx_mail_plus_route_t          *route;
    ngx_mail_plus_main_conf_t      *mpcf;
    ngx_mail_plus_throttle_node_t  *node;

    mpcf = check->mpcf;
    route = &check->route;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, check->log, 0,
                   "router: check %p answered: %s", check,
                   route->status == NGX_MAIL_PLUS_ALLOW ? "allow"
                   : route->status == NGX_MAIL_PLUS_DENY ? "deny" : "tempfail");

    if (route->status == NGX_MAIL_PLUS_DENY && route->delay == 0) {
        route->delay = mpcf->auth_delay;
    }

    if (mpcf->shm_zone == NULL || !check->auth.check || route->locked) {
        return;
    }

    zone = mpcf->shm_zone->data;

    switch (route->status) {

    case NGX_MAIL_PLUS_ALLOW:
        (void) ngx_atomic_fetch_add(&zone->sh->stats.allowed, 1);
        break;

    case NGX_MAIL_PLUS_DENY:
        (void) ngx_atomic_fetch_add(&zone->sh->stats.denied, 1);
        break;

    default: /* NGX_MAIL_PLUS_TEMPFAIL */
        (void) ngx_atomic_fetch_add(&zone->sh->stats.tempfail, 1);
        return;
    }

    haslogin = ngx_mail_plus_throttle_key(check, NGX_MAIL_PLUS_THROTTLE_LOGIN,
                                          &lkey, lbuf);
    hasaddr = ngx_mail_plus_throttle_key(check,
                                         NGX_MAIL_PLUS_THROTTLE_ADDRESS,
                                         &akey, abuf);

    now = ngx_time();

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (route->status == NGX_MAIL_PLUS_ALLOW) {

        if (haslogin && (mpcf->login_fails || mpcf->login_rate)) {
            node = ngx_mail_plus_throttle_lookup(zone, &lkey,
                                                 mpcf->login_rate != 0,
                                                 check->log);
            if (node) {
                node->fails = 0;

                if (node->minute + 60 <= now) {
                    node->minute = now;
                    node->logins = 0;
                }

                node->logins++;
            }
        }

        ngx_shmtx_unlock(&zone->shpool->mutex);
        return;
    }

    /* a failure counts for the login and for the address */

    fails = 0;

    for (i = 0; i < 2; i++) {

        if (i == 0 && !(haslogin && mpcf->login_fails)) {
            continue;
        }

        if (i == 1 && !(hasaddr && mpcf->address_fails)) {
            continue;
        }

        node = ngx_mail_plus_throttle_lookup(zone, i ? &akey : &lkey, 1,
                                             check->log);
        if (node == NULL) {
            continue;
        }

        if (node->fails == 0 || node->first + mpcf->fail_window <= now) {
            node->first = now;
            node->fails = 0;
        }

        node->fails++;

        if (node->fails > fails) {
            fails = node->fails;
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    /* the delay doubles with each failure */

    delay = mpcf->auth_delay;

    for (i = 1; i < fails && delay < mpcf->auth_max_delay; i++) {
        delay *= 2;
    }

    route->delay = ngx_min(delay, ngx_max(mpcf->auth_max_delay,
                                          mpcf->auth_delay));

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, check->log, 0,
                   "router: throttle: failure %ui, refusal delayed %T s",
                   fails, route->delay);
}


/*
 * the key of an entry: its type, then the login in lower case or the
 * client's network ("router_client_prefix"); 0 if not throttled
 */

static ngx_uint_t
ngx_mail_plus_throttle_key(ngx_mail_plus_check_t *check, ngx_uint_t type,
    ngx_str_t *key, u_char *buf)
{
    u_char                     *p;
    size_t                      len;
    ngx_addr_t                  addr;
    ngx_mail_plus_main_conf_t  *mpcf;

    mpcf = check->mpcf;

    key->data = buf;
    buf[0] = (u_char) type;

    if (check->auth.client.len
        && ngx_parse_addr(check->pool, &addr, check->auth.client.data,
                          check->auth.client.len)
           == NGX_OK)
    {
        if (mpcf->trusted
            && ngx_cidr_match(addr.sockaddr, mpcf->trusted) == NGX_OK)
        {
            return 0;
        }

    } else {
        addr.sockaddr = NULL;
    }

    if (type == NGX_MAIL_PLUS_THROTTLE_LOGIN) {
        len = ngx_min(check->auth.login.len, NGX_MAIL_PLUS_KEY_LEN - 1);

        if (len == 0) {
            return 0;
        }

        ngx_strlow(buf + 1, check->auth.login.data, len);
        key->len = 1 + len;

        return 1;
    }

    if (addr.sockaddr == NULL) {

        /* not an address nginx knows: the text as it is */

        len = ngx_min(check->auth.client.len, NGX_MAIL_PLUS_KEY_LEN - 1);

        if (len == 0) {
            return 0;
        }

        p = ngx_cpymem(buf + 1, check->auth.client.data, len);
        key->len = p - buf;

        return 1;
    }

    /* the client's network, as "router_client_prefix" sets it */

    len = ngx_mail_plus_client_key(mpcf, addr.sockaddr, buf + 1);

    if (len == 0) {
        return 0;
    }

    key->len = 1 + len;

    return 1;
}


static ngx_uint_t
ngx_mail_plus_throttle_locked(ngx_mail_plus_main_conf_t *mpcf,
    ngx_mail_plus_throttle_node_t *node, ngx_uint_t limit)
{
    return node->fails >= limit
           && node->first + mpcf->fail_window > ngx_time();
}


/* with the zone locked */

static ngx_mail_plus_throttle_node_t *
ngx_mail_plus_throttle_lookup(ngx_mail_plus_zone_t *zone, ngx_str_t *key,
    ngx_uint_t create, ngx_log_t *log)
{
    size_t                          size;
    uint32_t                        hash;
    ngx_str_node_t                 *sn;
    ngx_mail_plus_throttle_node_t  *node;

    hash = ngx_crc32_short(key->data, key->len);

    sn = ngx_str_rbtree_lookup(&zone->sh->rbtree, key, hash);

    if (sn) {
        node = (ngx_mail_plus_throttle_node_t *) sn;

        node->last = ngx_time();

        ngx_queue_remove(&node->queue);
        ngx_queue_insert_head(&zone->sh->queue, &node->queue);

        return node;
    }

    if (!create) {
        return NULL;
    }

    /* two stale entries go with each new one */

    (void) ngx_mail_plus_throttle_expire(zone, 2, 0);

    size = offsetof(ngx_mail_plus_throttle_node_t, data) + key->len;

    node = ngx_slab_alloc_locked(zone->shpool, size);

    if (node == NULL) {

        (void) ngx_mail_plus_throttle_expire(zone, 16, 1);

        node = ngx_slab_alloc_locked(zone->shpool, size);

        if (zone->sh->warned + 60 <= ngx_time()) {
            zone->sh->warned = ngx_time();

            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "mail router zone \"%V\" is full, "
                          "the oldest throttling entries were dropped",
                          &zone->mpcf->shm_zone->shm.name);
        }

        if (node == NULL) {
            return NULL;
        }
    }

    ngx_memzero(node, offsetof(ngx_mail_plus_throttle_node_t, data));

    ngx_memcpy(node->data, key->data, key->len);

    node->sn.node.key = hash;
    node->sn.str.data = node->data;
    node->sn.str.len = key->len;
    node->last = ngx_time();

    ngx_rbtree_insert(&zone->sh->rbtree, &node->sn.node);
    ngx_queue_insert_head(&zone->sh->queue, &node->queue);

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, log, 0,
                   "router: zone: throttle entry of type %c added",
                   key->data[0]);

    return node;
}


/*
 * with the zone locked: drops up to n of the least recently used entries,
 * only stale ones (no failure within the window, no login within the
 * minute), or with "force" any; NGX_DECLINED if there were none to drop
 */

ngx_int_t
ngx_mail_plus_throttle_expire(ngx_mail_plus_zone_t *zone, ngx_uint_t n,
    ngx_uint_t force)
{
    time_t                          now, ttl;
    ngx_queue_t                    *q;
    ngx_mail_plus_throttle_node_t  *node;

    now = ngx_time();
    ttl = ngx_max(zone->mpcf->fail_window, 60);

    if (ngx_queue_empty(&zone->sh->queue)) {
        return NGX_DECLINED;
    }

    while (n--) {

        if (ngx_queue_empty(&zone->sh->queue)) {
            return NGX_OK;
        }

        q = ngx_queue_last(&zone->sh->queue);
        node = ngx_queue_data(q, ngx_mail_plus_throttle_node_t, queue);

        if (!force && node->last + ttl > now) {
            return NGX_OK;
        }

        ngx_queue_remove(q);
        ngx_rbtree_delete(&zone->sh->rbtree, &node->sn.node);
        ngx_slab_free_locked(zone->shpool, node);
    }

    return NGX_OK;
}


/* router_client_prefix 32 64: the IPv4 and IPv6 prefix lengths */

char *
ngx_mail_plus_client_prefix(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_mail_plus_main_conf_t *mpcf = conf;

    ngx_int_t   n4, n6;
    ngx_str_t  *value;

    if (mpcf->prefix4 != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    n4 = ngx_atoi(value[1].data, value[1].len);
    n6 = ngx_atoi(value[2].data, value[2].len);

    if (n4 < 1 || n4 > 32 || n6 < 1 || n6 > 128) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid prefix lengths \"%V %V\": 1..32 for "
                           "IPv4, 1..128 for IPv6", &value[1], &value[2]);
        return NGX_CONF_ERROR;
    }

    mpcf->prefix4 = n4;
    mpcf->prefix6 = n6;

    return NGX_CONF_OK;
}


/*
 * a client as session limits and throttling count it: its network of
 * "router_client_prefix" bits (an IPv4 address mapped into IPv6 counts as
 * IPv4); buf has room for NGX_MAIL_PLUS_CLIENT_KEY_LEN bytes; 0 for an
 * address of another family (a UNIX socket)
 */

size_t
ngx_mail_plus_client_key(ngx_mail_plus_main_conf_t *mpcf, struct sockaddr *sa,
    u_char *buf)
{
    u_char               *a;
    size_t                len;
    ngx_uint_t            i, bits;
    struct sockaddr_in   *sin;
#if (NGX_HAVE_INET6)
    struct sockaddr_in6  *sin6;
#endif

    switch (sa->sa_family) {

#if (NGX_HAVE_INET6)
    case AF_INET6:
        sin6 = (struct sockaddr_in6 *) sa;
        a = sin6->sin6_addr.s6_addr;

        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
            a += 12;
            len = 4;
            bits = mpcf->prefix4;
            buf[0] = '4';

        } else {
            len = 16;
            bits = mpcf->prefix6;
            buf[0] = '6';
        }

        break;
#endif

    case AF_INET:
        sin = (struct sockaddr_in *) sa;
        a = (u_char *) &sin->sin_addr.s_addr;
        len = 4;
        bits = mpcf->prefix4;
        buf[0] = '4';
        break;

    default:
        return 0;
    }

    for (i = 0; i < len; i++) {

        if (bits >= 8) {
            buf[1 + i] = a[i];
            bits -= 8;

        } else {
            buf[1 + i] = a[i] & (u_char) (0xff << (8 - bits));
            bits = 0;
        }
    }

    return 1 + len;
}
