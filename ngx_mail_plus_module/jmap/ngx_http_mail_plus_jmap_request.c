
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_http_mail_plus_jmap_request.h"


/*
 * A JMAP request (RFC 8620, section 3.3) read from its JSON text and
 * checked, and the result references of its calls (section 3.7): pure
 * functions of JSON with no request at hand, for the API and the fuzz
 * target.  The text is parsed by jansson with duplicate keys refused,
 * after a scan that refuses a nesting deeper than
 * NGX_HTTP_MAIL_PLUS_JMAP_MAX_DEPTH (jansson's own limit is far deeper,
 * and the pointers below walk as deep as the text nests).
 */


static ngx_int_t ngx_http_mail_plus_jmap_depth(const u_char *p, size_t len);
static ngx_int_t ngx_http_mail_plus_jmap_using(json_t *using,
    ngx_http_mail_plus_jmap_capability_t *caps,
    ngx_http_mail_plus_jmap_request_t *req,
    ngx_http_mail_plus_jmap_problem_t *problem);
static ngx_int_t ngx_http_mail_plus_jmap_calls(json_t *calls,
    ngx_uint_t max_calls, ngx_http_mail_plus_jmap_problem_t *problem);
static json_t *ngx_http_mail_plus_jmap_reference(json_t *ref,
    json_t *responses);
static json_t *ngx_http_mail_plus_jmap_walk(json_t *value, const char *p);
static ngx_int_t ngx_http_mail_plus_jmap_token(const char **p, char *buf,
    size_t size);
static ngx_int_t ngx_http_mail_plus_jmap_index(const char *token,
    size_t *index);
static ngx_int_t ngx_http_mail_plus_jmap_problem_set(
    ngx_http_mail_plus_jmap_problem_t *problem,
    ngx_http_mail_plus_jmap_problem_e type, const char *detail);


/* a JSON Pointer's reference token, at most */

#define NGX_HTTP_MAIL_PLUS_JMAP_TOKEN_LEN  256


ngx_int_t
ngx_http_mail_plus_jmap_parse(const u_char *text, size_t len,
    ngx_uint_t max_calls, ngx_http_mail_plus_jmap_capability_t *caps,
    ngx_http_mail_plus_jmap_request_t *req,
    ngx_http_mail_plus_jmap_problem_t *problem)
{
    json_t        *root, *using, *calls, *created, *v;
    ngx_int_t      rc;
    const char    *key;
    json_error_t   error;

    ngx_memzero(req, sizeof(ngx_http_mail_plus_jmap_request_t));
    ngx_memzero(problem, sizeof(ngx_http_mail_plus_jmap_problem_t));

    if (ngx_http_mail_plus_jmap_depth(text, len) != NGX_OK) {
        return ngx_http_mail_plus_jmap_problem_set(problem,
                   NGX_HTTP_MAIL_PLUS_JMAP_NOT_JSON,
                   "the JSON nests too deep");
    }

    root = json_loadb((const char *) text, len, JSON_REJECT_DUPLICATES,
                      &error);
    if (root == NULL) {
        return ngx_http_mail_plus_jmap_problem_set(problem,
                   NGX_HTTP_MAIL_PLUS_JMAP_NOT_JSON,
                   "the body is not valid JSON (I-JSON, no duplicate "
                   "keys, no NUL)");
    }

    req->root = root;

    using = json_object_get(root, "using");
    calls = json_object_get(root, "methodCalls");
    created = json_object_get(root, "createdIds");

    if (!json_is_object(root) || !json_is_array(using)
        || !json_is_array(calls)
        || (created != NULL && !json_is_object(created)))
    {
        rc = ngx_http_mail_plus_jmap_problem_set(problem,
                 NGX_HTTP_MAIL_PLUS_JMAP_NOT_REQUEST,
                 "a request is an object with \"using\" and "
                 "\"methodCalls\" arrays");
        goto failed;
    }

    json_object_foreach(created, key, v) {
        if (!json_is_string(v)) {
            rc = ngx_http_mail_plus_jmap_problem_set(problem,
                     NGX_HTTP_MAIL_PLUS_JMAP_NOT_REQUEST,
                     "\"createdIds\" maps ids to ids");
            goto failed;
        }
    }

    rc = ngx_http_mail_plus_jmap_using(using, caps, req, problem);
    if (rc != NGX_OK) {
        goto failed;
    }

    rc = ngx_http_mail_plus_jmap_calls(calls, max_calls, problem);
    if (rc != NGX_OK) {
        goto failed;
    }

    req->calls = calls;
    req->created_ids = created;

    return NGX_OK;

failed:

    json_decref(root);
    req->root = NULL;

    return rc;
}


/* objects and arrays open no deeper than the limit, strings aside */

static ngx_int_t
ngx_http_mail_plus_jmap_depth(const u_char *p, size_t len)
{
    ngx_uint_t     depth, in_string;
    const u_char  *last;

    depth = 0;
    in_string = 0;

    for (last = p + len; p < last; p++) {

        if (in_string) {
            if (*p == '\\') {
                p++;

            } else if (*p == '"') {
                in_string = 0;
            }

            continue;
        }

        switch (*p) {

        case '"':
            in_string = 1;
            break;

        case '[':
        case '{':
            if (++depth > NGX_HTTP_MAIL_PLUS_JMAP_MAX_DEPTH) {
                return NGX_DECLINED;
            }
            break;

        case ']':
        case '}':
            if (depth) {
                depth--;
            }
            break;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mail_plus_jmap_using(json_t *using,
    ngx_http_mail_plus_jmap_capability_t *caps,
    ngx_http_mail_plus_jmap_request_t *req,
    ngx_http_mail_plus_jmap_problem_t *problem)
{
    size_t       i;
    json_t      *v;
    ngx_uint_t   n;

    json_array_foreach(using, i, v) {

        if (!json_is_string(v)) {
            return ngx_http_mail_plus_jmap_problem_set(problem,
                       NGX_HTTP_MAIL_PLUS_JMAP_NOT_REQUEST,
                       "\"using\" is an array of strings");
        }

        for (n = 0; caps[n].urn; n++) {
            if (ngx_strcmp(json_string_value(v), caps[n].urn) == 0) {
                break;
            }
        }

        if (caps[n].urn == NULL) {
            return ngx_http_mail_plus_jmap_problem_set(problem,
                       NGX_HTTP_MAIL_PLUS_JMAP_UNKNOWN_CAPABILITY,
                       "\"using\" names a capability this server does "
                       "not have");
        }

        req->using |= caps[n].bit;
    }

    return NGX_OK;
}


/* [name, arguments, call id], no more than max_calls of them */

static ngx_int_t
ngx_http_mail_plus_jmap_calls(json_t *calls, ngx_uint_t max_calls,
    ngx_http_mail_plus_jmap_problem_t *problem)
{
    size_t   i;
    json_t  *call;

    json_array_foreach(calls, i, call) {

        if (!json_is_array(call) || json_array_size(call) != 3
            || !json_is_string(json_array_get(call, 0))
            || !json_is_object(json_array_get(call, 1))
            || !json_is_string(json_array_get(call, 2)))
        {
            return ngx_http_mail_plus_jmap_problem_set(problem,
                       NGX_HTTP_MAIL_PLUS_JMAP_NOT_REQUEST,
                       "a method call is [name, arguments, call id]");
        }
    }

    if (json_array_size(calls) > max_calls) {
        problem->limit = "maxCallsInRequest";
        return ngx_http_mail_plus_jmap_problem_set(problem,
                   NGX_HTTP_MAIL_PLUS_JMAP_LIMIT,
                   "too many method calls in the request");
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mail_plus_jmap_problem_set(ngx_http_mail_plus_jmap_problem_t *problem,
    ngx_http_mail_plus_jmap_problem_e type, const char *detail)
{
    problem->type = type;
    problem->detail = detail;

    return NGX_DECLINED;
}


/*
 * "#name": {resultOf, name, path} becomes "name": the value the pointer
 * finds in the first earlier response with that call id
 */

ngx_int_t
ngx_http_mail_plus_jmap_resolve(json_t *args, json_t *responses,
    size_t *budget, json_t **resolved, const char **error)
{
    size_t       cost;
    json_t      *out, *v, *value;
    const char  *key;

    *resolved = NULL;

    out = json_object();
    if (out == NULL) {
        return NGX_ERROR;
    }

    json_object_foreach(args, key, v) {

        if (key[0] != '#') {
            if (json_object_set(out, key, v) != 0) {
                goto nomem;
            }

            continue;
        }

        if (json_object_get(args, key + 1) != NULL) {
            *error = "invalidArguments";
            json_decref(out);
            return NGX_DECLINED;
        }

        value = ngx_http_mail_plus_jmap_reference(v, responses);
        if (value == NULL) {
            *error = "invalidResultReference";
            json_decref(out);
            return NGX_DECLINED;
        }

        cost = ngx_http_mail_plus_jmap_cost(value, *budget);

        if (cost > *budget) {
            *error = "serverFail";
            json_decref(value);
            json_decref(out);
            return NGX_DECLINED;
        }

        *budget -= cost;

        if (json_object_set_new(out, key + 1, value) != 0) {
            goto nomem;
        }
    }

    *resolved = out;

    return NGX_OK;

nomem:

    json_decref(out);

    return NGX_ERROR;
}


static json_t *
ngx_http_mail_plus_jmap_reference(json_t *ref, json_t *responses)
{
    size_t       i;
    json_t      *resp, *of, *name, *path;
    const char  *id;

    of = json_object_get(ref, "resultOf");
    name = json_object_get(ref, "name");
    path = json_object_get(ref, "path");

    if (!json_is_object(ref) || !json_is_string(of) || !json_is_string(name)
        || !json_is_string(path) || json_object_size(ref) != 3)
    {
        return NULL;
    }

    id = json_string_value(of);

    json_array_foreach(responses, i, resp) {

        if (ngx_strcmp(json_string_value(json_array_get(resp, 2)), id) != 0) {
            continue;
        }

        if (ngx_strcmp(json_string_value(json_array_get(resp, 0)),
                       json_string_value(name))
            != 0)
        {
            return NULL;
        }

        return ngx_http_mail_plus_jmap_pointer(json_array_get(resp, 1),
                                               json_string_value(path));
    }

    return NULL;
}


json_t *
ngx_http_mail_plus_jmap_pointer(json_t *value, const char *path)
{
    if (path[0] == '\0') {
        return json_incref(value);
    }

    if (path[0] != '/') {
        return NULL;
    }

    return ngx_http_mail_plus_jmap_walk(value, path);
}


/*
 * p is at a "/" or the end; "*" on an array applies the rest of the path
 * to each item, and the items' arrays are joined (section 3.7)
 */

static json_t *
ngx_http_mail_plus_jmap_walk(json_t *value, const char *p)
{
    char     token[NGX_HTTP_MAIL_PLUS_JMAP_TOKEN_LEN];
    size_t   i, index;
    json_t  *out, *item, *r;

    if (*p == '\0') {
        return json_incref(value);
    }

    p++;

    if (ngx_http_mail_plus_jmap_token(&p, token, sizeof(token)) != NGX_OK) {
        return NULL;
    }

    if (json_is_object(value)) {
        item = json_object_get(value, token);
        return item ? ngx_http_mail_plus_jmap_walk(item, p) : NULL;
    }

    if (!json_is_array(value)) {
        return NULL;
    }

    if (ngx_strcmp(token, "*") != 0) {
        if (ngx_http_mail_plus_jmap_index(token, &index) != NGX_OK) {
            return NULL;
        }

        item = json_array_get(value, index);
        return item ? ngx_http_mail_plus_jmap_walk(item, p) : NULL;
    }

    out = json_array();
    if (out == NULL) {
        return NULL;
    }

    json_array_foreach(value, i, item) {

        r = ngx_http_mail_plus_jmap_walk(item, p);
        if (r == NULL) {
            json_decref(out);
            return NULL;
        }

        if (json_is_array(r)) {
            if (json_array_extend(out, r) != 0) {
                json_decref(r);
                json_decref(out);
                return NULL;
            }

            json_decref(r);
            continue;
        }

        if (json_array_append_new(out, r) != 0) {
            json_decref(out);
            return NULL;
        }
    }

    return out;
}


/* a reference token up to the next "/", with "~1" and "~0" read */

static ngx_int_t
ngx_http_mail_plus_jmap_token(const char **p, char *buf, size_t size)
{
    size_t       n;
    const char  *s;

    n = 0;

    for (s = *p; *s && *s != '/'; s++) {

        if (n + 1 >= size) {
            return NGX_DECLINED;
        }

        if (*s == '~') {
            if (s[1] == '0') {
                buf[n++] = '~';

            } else if (s[1] == '1') {
                buf[n++] = '/';

            } else {
                return NGX_DECLINED;
            }

            s++;
            continue;
        }

        buf[n++] = *s;
    }

    buf[n] = '\0';
    *p = s;

    return NGX_OK;
}


/* an array index: digits, no leading zero */

static ngx_int_t
ngx_http_mail_plus_jmap_index(const char *token, size_t *index)
{
    size_t  n;

    if (token[0] == '\0' || (token[0] == '0' && token[1] != '\0')) {
        return NGX_DECLINED;
    }

    for (n = 0; *token; token++) {

        if (*token < '0' || *token > '9' || n > 100000000) {
            return NGX_DECLINED;
        }

        n = n * 10 + (*token - '0');
    }

    *index = n;

    return NGX_OK;
}


size_t
ngx_http_mail_plus_jmap_cost(json_t *value, size_t budget)
{
    size_t       i, cost;
    json_t      *v;
    const char  *key;

    switch (json_typeof(value)) {

    case JSON_OBJECT:
        cost = 2;

        json_object_foreach(value, key, v) {
            if (cost > budget) {
                break;
            }

            cost += ngx_strlen(key) + 4;
            cost += ngx_http_mail_plus_jmap_cost(v, budget - ngx_min(cost,
                                                                     budget));
        }

        return cost;

    case JSON_ARRAY:
        cost = 2;

        json_array_foreach(value, i, v) {
            if (cost > budget) {
                break;
            }

            cost += 1 + ngx_http_mail_plus_jmap_cost(v,
                                           budget - ngx_min(cost, budget));
        }

        return cost;

    case JSON_STRING:
        return 2 + json_string_length(value);

    default:
        return 24;
    }
}
