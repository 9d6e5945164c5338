
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_http_mail_plus_jmap_message.h"


/*
 * The message builder (RFC 8621 4.6): the header fields from the Email's
 * properties, then its body.  "textBody", "htmlBody" and "attachments"
 * are first made into a "bodyStructure" (text and HTML: multipart/
 * alternative; with attachments: multipart/mixed), then the structure is
 * written part by part: text from "bodyValues" as quoted-printable UTF-8,
 * blobs as base64.  The output grows in the pool, doubled as needed.
 */


#define NGX_HTTP_MAIL_PLUS_JMAP_FOLD     76    /* a folded line, at most */
#define NGX_HTTP_MAIL_PLUS_JMAP_WORD     45    /* UTF-8 bytes of a word */
#define NGX_HTTP_MAIL_PLUS_JMAP_DEPTH    8     /* multipart nesting */
#define NGX_HTTP_MAIL_PLUS_JMAP_NAME     255   /* a display or file name */


typedef struct {
    ngx_pool_t                         *pool;
    u_char                             *data;
    size_t                              len;
    size_t                              size;
} ngx_http_mail_plus_jmap_out_t;


static ngx_int_t ngx_http_mail_plus_jmap_headers(
    ngx_http_mail_plus_jmap_message_t *m, ngx_http_mail_plus_jmap_out_t *o,
    json_t *email);
static size_t ngx_http_mail_plus_jmap_column(
    ngx_http_mail_plus_jmap_out_t *o);
static ngx_int_t ngx_http_mail_plus_jmap_addresses(
    ngx_http_mail_plus_jmap_message_t *m, ngx_http_mail_plus_jmap_out_t *o,
    json_t *email, const char *property, const char *field);
static ngx_int_t ngx_http_mail_plus_jmap_msg_ids(
    ngx_http_mail_plus_jmap_message_t *m, ngx_http_mail_plus_jmap_out_t *o,
    json_t *email, const char *property, const char *field);
static ngx_int_t ngx_http_mail_plus_jmap_msg_id(const char *id);
static ngx_int_t ngx_http_mail_plus_jmap_message_id(
    ngx_http_mail_plus_jmap_message_t *m, ngx_http_mail_plus_jmap_out_t *o,
    json_t *email);
static ngx_int_t ngx_http_mail_plus_jmap_date(
    ngx_http_mail_plus_jmap_message_t *m, ngx_http_mail_plus_jmap_out_t *o,
    json_t *email);
static ngx_int_t ngx_http_mail_plus_jmap_custom(
    ngx_http_mail_plus_jmap_message_t *m, ngx_http_mail_plus_jmap_out_t *o,
    json_t *email);
static json_t *ngx_http_mail_plus_jmap_structure(
    ngx_http_mail_plus_jmap_message_t *m, json_t *email);
static json_t *ngx_http_mail_plus_jmap_body_list(
    ngx_http_mail_plus_jmap_message_t *m, json_t *email,
    const char *property, const char *type);
static ngx_int_t ngx_http_mail_plus_jmap_part(
    ngx_http_mail_plus_jmap_message_t *m, ngx_http_mail_plus_jmap_out_t *o,
    json_t *email, json_t *part, ngx_uint_t depth);
static ngx_int_t ngx_http_mail_plus_jmap_multipart(
    ngx_http_mail_plus_jmap_message_t *m, ngx_http_mail_plus_jmap_out_t *o,
    json_t *email, json_t *part, ngx_str_t *type, ngx_uint_t depth);
static ngx_int_t ngx_http_mail_plus_jmap_part_fields(
    ngx_http_mail_plus_jmap_message_t *m, ngx_http_mail_plus_jmap_out_t *o,
    json_t *part);
static ngx_int_t ngx_http_mail_plus_jmap_text_part(
    ngx_http_mail_plus_jmap_message_t *m, ngx_http_mail_plus_jmap_out_t *o,
    json_t *email, json_t *part, ngx_str_t *type);
static ngx_int_t ngx_http_mail_plus_jmap_blob_part(
    ngx_http_mail_plus_jmap_message_t *m, ngx_http_mail_plus_jmap_out_t *o,
    json_t *part, ngx_str_t *type);
static ngx_int_t ngx_http_mail_plus_jmap_param(
    ngx_http_mail_plus_jmap_out_t *o, const char *name, const char *value);
static ngx_int_t ngx_http_mail_plus_jmap_text(
    ngx_http_mail_plus_jmap_out_t *o, size_t col, const char *s);
static ngx_int_t ngx_http_mail_plus_jmap_words(
    ngx_http_mail_plus_jmap_out_t *o, u_char *s, size_t len);
static ngx_int_t ngx_http_mail_plus_jmap_phrase(
    ngx_http_mail_plus_jmap_out_t *o, const char *s);
static ngx_int_t ngx_http_mail_plus_jmap_qp(ngx_http_mail_plus_jmap_out_t *o,
    u_char *p, size_t len);
static ngx_int_t ngx_http_mail_plus_jmap_base64(
    ngx_http_mail_plus_jmap_out_t *o, ngx_str_t *bytes);
static ngx_int_t ngx_http_mail_plus_jmap_put(ngx_http_mail_plus_jmap_out_t *o,
    const void *p, size_t len);
static ngx_int_t ngx_http_mail_plus_jmap_puts(
    ngx_http_mail_plus_jmap_out_t *o, const char *s);
static ngx_int_t ngx_http_mail_plus_jmap_field_name(const char *name,
    size_t len);
static ngx_uint_t ngx_http_mail_plus_jmap_atext(u_char ch);
static ngx_int_t ngx_http_mail_plus_jmap_refuse(
    ngx_http_mail_plus_jmap_message_t *m, const char *error,
    const char *property);


static const char  *ngx_http_mail_plus_jmap_week[] = {
    "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char  *ngx_http_mail_plus_jmap_months[] = {
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
    "Nov", "Dec" };

/* properties of the server's own, or not made here */

static const char  *ngx_http_mail_plus_jmap_refused[] = {
    "id", "blobId", "threadId", "size", "hasAttachment", "preview",
    "headers", NULL };


ngx_int_t
ngx_http_mail_plus_jmap_message(ngx_http_mail_plus_jmap_message_t *m,
    json_t *email)
{
    json_t                         *root;
    ngx_int_t                       rc;
    ngx_uint_t                      i;
    ngx_http_mail_plus_jmap_out_t   out;

    if (!json_is_object(email)) {
        return ngx_http_mail_plus_jmap_refuse(m, "not an object", NULL);
    }

    for (i = 0; ngx_http_mail_plus_jmap_refused[i]; i++) {
        if (json_object_get(email, ngx_http_mail_plus_jmap_refused[i])) {
            return ngx_http_mail_plus_jmap_refuse(m,
                                   "a property the server sets, or one not "
                                   "supported on create",
                                   ngx_http_mail_plus_jmap_refused[i]);
        }
    }

    out.pool = m->pool;
    out.size = 4096;
    out.len = 0;
    out.data = ngx_pnalloc(m->pool, out.size);
    if (out.data == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_mail_plus_jmap_headers(m, &out, email);
    if (rc != NGX_OK) {
        return rc;
    }

    root = ngx_http_mail_plus_jmap_structure(m, email);
    if (root == NULL) {
        return m->error ? NGX_DECLINED : NGX_ERROR;
    }

    if (ngx_http_mail_plus_jmap_puts(&out, "MIME-Version: 1.0\r\n")
        != NGX_OK)
    {
        json_decref(root);
        return NGX_ERROR;
    }

    rc = ngx_http_mail_plus_jmap_part(m, &out, email, root, 0);

    json_decref(root);

    if (rc != NGX_OK) {
        return rc;
    }

    m->message.data = out.data;
    m->message.len = out.len;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mail_plus_jmap_headers(ngx_http_mail_plus_jmap_message_t *m,
    ngx_http_mail_plus_jmap_out_t *o, json_t *email)
{
    json_t      *v;
    ngx_int_t    rc;
    ngx_uint_t   i;

    static const char  *addresses[] = {
        "from", "From", "sender", "Sender", "replyTo", "Reply-To",
        "to", "To", "cc", "Cc", "bcc", "Bcc", NULL };

    rc = ngx_http_mail_plus_jmap_date(m, o, email);
    if (rc != NGX_OK) {
        return rc;
    }

    for (i = 0; addresses[i]; i += 2) {
        rc = ngx_http_mail_plus_jmap_addresses(m, o, email, addresses[i],
                                               addresses[i + 1]);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    v = json_object_get(email, "subject");

    if (v && !json_is_null(v)) {
        if (!json_is_string(v)
            || json_string_length(v) > 4 * NGX_HTTP_MAIL_PLUS_JMAP_FOLD * 10)
        {
            return ngx_http_mail_plus_jmap_refuse(m, "a string is expected",
                                                  "subject");
        }

        if (ngx_http_mail_plus_jmap_puts(o, "Subject: ") != NGX_OK
            || ngx_http_mail_plus_jmap_text(o, sizeof("Subject: ") - 1,
                                            json_string_value(v))
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    rc = ngx_http_mail_plus_jmap_message_id(m, o, email);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_mail_plus_jmap_msg_ids(m, o, email, "inReplyTo",
                                         "In-Reply-To");
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_mail_plus_jmap_msg_ids(m, o, email, "references",
                                         "References");
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_mail_plus_jmap_custom(m, o, email);
}


/* "From: Name <a@b>, <c@d>\r\n", folded; null or absent: no field */

static ngx_int_t
ngx_http_mail_plus_jmap_addresses(ngx_http_mail_plus_jmap_message_t *m,
    ngx_http_mail_plus_jmap_out_t *o, json_t *email, const char *property,
    const char *field)
{
    json_t      *list, *a, *name, *addr;
    size_t       i, len;
    ngx_str_t    s;
    const char  *sep;

    list = json_object_get(email, property);

    if (list == NULL || json_is_null(list)) {
        return NGX_OK;
    }

    if (!json_is_array(list) || json_array_size(list) == 0
        || json_array_size(list) > 1000)
    {
        return ngx_http_mail_plus_jmap_refuse(m,
                                       "an array of EmailAddress objects is "
                                       "expected", property);
    }

    if (ngx_http_mail_plus_jmap_puts(o, field) != NGX_OK
        || ngx_http_mail_plus_jmap_puts(o, ":") != NGX_OK)
    {
        return NGX_ERROR;
    }

    json_array_foreach(list, i, a) {
        name = json_object_get(a, "name");
        addr = json_object_get(a, "email");

        if (!json_is_object(a) || !json_is_string(addr)
            || (name && !json_is_null(name) && !json_is_string(name)))
        {
            return ngx_http_mail_plus_jmap_refuse(m,
                                           "an EmailAddress object is "
                                           "expected", property);
        }

        s.data = (u_char *) json_string_value(addr);
        s.len = json_string_length(addr);

        if (ngx_http_mail_plus_jmap_addr_spec(&s) != NGX_OK) {
            return ngx_http_mail_plus_jmap_refuse(m, "an invalid address",
                                                  property);
        }

        if (name && json_is_string(name)
            && json_string_length(name) > NGX_HTTP_MAIL_PLUS_JMAP_NAME)
        {
            return ngx_http_mail_plus_jmap_refuse(m, "a name too long",
                                                  property);
        }

        /* folded only where the line would grow too long */

        len = s.len + 3;

        if (name && json_is_string(name)) {
            len += json_string_length(name) + 1;
        }

        if (i == 0) {
            sep = " ";

        } else if (ngx_http_mail_plus_jmap_column(o) + len
                   > NGX_HTTP_MAIL_PLUS_JMAP_FOLD)
        {
            sep = ",\r\n ";

        } else {
            sep = ", ";
        }

        if (ngx_http_mail_plus_jmap_puts(o, sep) != NGX_OK) {
            return NGX_ERROR;
        }

        if (name && json_is_string(name) && json_string_length(name)) {
            if (ngx_http_mail_plus_jmap_phrase(o, json_string_value(name))
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            sep = (ngx_http_mail_plus_jmap_column(o) + s.len + 3
                   > NGX_HTTP_MAIL_PLUS_JMAP_FOLD) ? "\r\n <" : " <";

            if (ngx_http_mail_plus_jmap_puts(o, sep) != NGX_OK
                || ngx_http_mail_plus_jmap_put(o, s.data, s.len) != NGX_OK
                || ngx_http_mail_plus_jmap_puts(o, ">") != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (ngx_http_mail_plus_jmap_put(o, s.data, s.len) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return ngx_http_mail_plus_jmap_puts(o, "\r\n");
}


/* the bytes written since the last line's start */

static size_t
ngx_http_mail_plus_jmap_column(ngx_http_mail_plus_jmap_out_t *o)
{
    u_char  *p;

    p = o->data + o->len;

    while (p > o->data && p[-1] != '\n') {
        p--;
    }

    return o->data + o->len - p;
}


/* "In-Reply-To: <a@b>\r\n <c@d>\r\n" from an array of ids */

static ngx_int_t
ngx_http_mail_plus_jmap_msg_ids(ngx_http_mail_plus_jmap_message_t *m,
    ngx_http_mail_plus_jmap_out_t *o, json_t *email, const char *property,
    const char *field)
{
    json_t  *list, *id;
    size_t   i;

    list = json_object_get(email, property);

    if (list == NULL || json_is_null(list)) {
        return NGX_OK;
    }

    if (!json_is_array(list) || json_array_size(list) == 0
        || json_array_size(list) > 1000)
    {
        return ngx_http_mail_plus_jmap_refuse(m, "an array of ids is "
                                              "expected", property);
    }

    if (ngx_http_mail_plus_jmap_puts(o, field) != NGX_OK
        || ngx_http_mail_plus_jmap_puts(o, ":") != NGX_OK)
    {
        return NGX_ERROR;
    }

    json_array_foreach(list, i, id) {
        if (!json_is_string(id)
            || ngx_http_mail_plus_jmap_msg_id(json_string_value(id))
               != NGX_OK)
        {
            return ngx_http_mail_plus_jmap_refuse(m, "an invalid message id",
                                                  property);
        }

        if (ngx_http_mail_plus_jmap_puts(o, i ? "\r\n <" : " <") != NGX_OK
            || ngx_http_mail_plus_jmap_puts(o, json_string_value(id))
               != NGX_OK
            || ngx_http_mail_plus_jmap_puts(o, ">") != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return ngx_http_mail_plus_jmap_puts(o, "\r\n");
}


/* id-left "@" id-right, each a dot-atom (RFC 5322 3.6.4), 250 bytes */

static ngx_int_t
ngx_http_mail_plus_jmap_msg_id(const char *id)
{
    size_t     len;
    u_char    *at;
    ngx_str_t  left, right;

    len = ngx_strlen(id);
    at = (u_char *) ngx_strlchr((u_char *) id, (u_char *) id + len, '@');

    if (at == NULL || len > 250) {
        return NGX_ERROR;
    }

    left.data = (u_char *) id;
    left.len = at - left.data;
    right.data = at + 1;
    right.len = (u_char *) id + len - right.data;

    if (left.len == 0 || right.len == 0) {
        return NGX_ERROR;
    }

    for (len = 0; len < left.len + 1 + right.len; len++) {
        if (left.data + len == at) {
            continue;
        }

        if (!ngx_http_mail_plus_jmap_atext(left.data[len])
            && left.data[len] != '.')
        {
            return NGX_ERROR;
        }
    }

    if (left.data[0] == '.' || at[-1] == '.' || right.data[0] == '.'
        || right.data[right.len - 1] == '.')
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the given messageId, or "<random@the From's domain>" */

static ngx_int_t
ngx_http_mail_plus_jmap_message_id(ngx_http_mail_plus_jmap_message_t *m,
    ngx_http_mail_plus_jmap_out_t *o, json_t *email)
{
    u_char      *p, *at, buf[sizeof("Message-ID: <@>\r\n") + 64 + 256];
    json_t      *v, *from;
    ngx_str_t    host;
    ngx_uint_t   i;

    v = json_object_get(email, "messageId");

    if (v && !json_is_null(v)) {
        if (!json_is_array(v) || json_array_size(v) != 1) {
            return ngx_http_mail_plus_jmap_refuse(m, "exactly one message "
                                                  "id is expected",
                                                  "messageId");
        }

        return ngx_http_mail_plus_jmap_msg_ids(m, o, email, "messageId",
                                               "Message-ID");
    }

    host = m->host;

    from = json_object_get(json_array_get(json_object_get(email, "from"), 0),
                           "email");

    if (json_is_string(from)) {
        p = (u_char *) json_string_value(from);
        at = (u_char *) ngx_strchr(p, '@');

        if (at) {
            host.data = at + 1;
            host.len = ngx_strlen(host.data);
        }
    }

    if (host.len > 255) {
        host.len = 0;
    }

    p = ngx_cpymem(buf, "Message-ID: <", sizeof("Message-ID: <") - 1);

    for (i = 0; i < 4; i++) {
        p = ngx_sprintf(p, "%08xD", (uint32_t) ngx_random());
    }

    p = ngx_sprintf(p, "@%V>\r\n", &host);

    return ngx_http_mail_plus_jmap_put(o, buf, p - buf);
}


/* "Date:" from sentAt (its offset kept), else now in UTC */

static ngx_int_t
ngx_http_mail_plus_jmap_date(ngx_http_mail_plus_jmap_message_t *m,
    ngx_http_mail_plus_jmap_out_t *o, json_t *email)
{
    u_char     *p, buf[sizeof("Date: Wed, 31 Dec 2000 23:59:59 +0000\r\n")];
    json_t     *v;
    time_t      t;
    ngx_tm_t    tm;
    ngx_int_t   offset;

    v = json_object_get(email, "sentAt");

    t = m->now;
    offset = 0;

    if (v && !json_is_null(v)
        && (!json_is_string(v)
            || ngx_http_mail_plus_jmap_parse_date(json_string_value(v), &t,
                                                  &offset)
               != NGX_OK))
    {
        return ngx_http_mail_plus_jmap_refuse(m, "a date is expected",
                                              "sentAt");
    }

    ngx_gmtime(t + offset * 60, &tm);

    p = ngx_sprintf(buf, "Date: %s, %02d %s %4d %02d:%02d:%02d %c%02i%02i\r\n",
                    ngx_http_mail_plus_jmap_week[tm.ngx_tm_wday],
                    tm.ngx_tm_mday,
                    ngx_http_mail_plus_jmap_months[tm.ngx_tm_mon - 1],
                    tm.ngx_tm_year, tm.ngx_tm_hour, tm.ngx_tm_min,
                    tm.ngx_tm_sec, offset < 0 ? '-' : '+',
                    ngx_abs(offset) / 60, ngx_abs(offset) % 60);

    return ngx_http_mail_plus_jmap_put(o, buf, p - buf);
}


/* "header:X-Name:asText" (or "header:X-Name"): a field of the client's */

static ngx_int_t
ngx_http_mail_plus_jmap_custom(ngx_http_mail_plus_jmap_message_t *m,
    ngx_http_mail_plus_jmap_out_t *o, json_t *email)
{
    u_char      *p;
    size_t       len;
    json_t      *v;
    const char  *key, *name;

    json_object_foreach(email, key, v) {

        if (ngx_strncmp(key, "header:", 7) != 0) {
            continue;
        }

        name = key + 7;
        p = (u_char *) ngx_strchr(name, ':');
        len = p ? (size_t) (p - (u_char *) name) : ngx_strlen(name);

        if ((p && ngx_strcmp(p, ":asText") != 0)
            || ngx_http_mail_plus_jmap_field_name(name, len) != NGX_OK)
        {
            return ngx_http_mail_plus_jmap_refuse(m,
                                           "only \"header:Name:asText\" of "
                                           "a field name not set otherwise "
                                           "is supported", key);
        }

        if (json_is_null(v)) {
            continue;
        }

        if (!json_is_string(v) || json_string_length(v) > 4000
            || ngx_strlchr((u_char *) json_string_value(v),
                           (u_char *) json_string_value(v)
                           + json_string_length(v), '\r')
            || ngx_strchr(json_string_value(v), '\n')
            || ngx_strlen(json_string_value(v)) != json_string_length(v))
        {
            return ngx_http_mail_plus_jmap_refuse(m, "a string without CR, "
                                                  "LF or NUL is expected",
                                                  key);
        }

        if (ngx_http_mail_plus_jmap_put(o, name, len) != NGX_OK
            || ngx_http_mail_plus_jmap_puts(o, ": ") != NGX_OK
            || ngx_http_mail_plus_jmap_text(o, len + 2, json_string_value(v))
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * "bodyStructure" as it is (a new reference), or one made from textBody,
 * htmlBody and attachments; NULL with m->error, or without memory
 */

static json_t *
ngx_http_mail_plus_jmap_structure(ngx_http_mail_plus_jmap_message_t *m,
    json_t *email)
{
    json_t  *bs, *text, *html, *att, *body, *mixed, *a;
    size_t   i;

    bs = json_object_get(email, "bodyStructure");
    att = json_object_get(email, "attachments");

    if (bs && !json_is_null(bs)) {
        if (json_object_get(email, "textBody")
            || json_object_get(email, "htmlBody") || att)
        {
            (void) ngx_http_mail_plus_jmap_refuse(m, "bodyStructure with "
                                                  "textBody, htmlBody or "
                                                  "attachments",
                                                  "bodyStructure");
            return NULL;
        }

        return json_incref(bs);
    }

    text = ngx_http_mail_plus_jmap_body_list(m, email, "textBody",
                                             "text/plain");
    html = ngx_http_mail_plus_jmap_body_list(m, email, "htmlBody",
                                             "text/html");

    if (m->error) {
        json_decref(text);
        json_decref(html);
        return NULL;
    }

    if (text && html) {
        body = json_pack("{s:s, s:[o, o]}", "type", "multipart/alternative",
                         "subParts", text, html);

    } else if (text || html) {
        body = text ? text : html;

    } else {
        body = json_pack("{s:s, s:s}", "type", "text/plain", "partId", "");
    }

    if (body == NULL) {
        return NULL;
    }

    if (att == NULL || json_is_null(att)) {
        return body;
    }

    if (!json_is_array(att) || json_array_size(att) > 1000) {
        json_decref(body);
        (void) ngx_http_mail_plus_jmap_refuse(m, "an array is expected",
                                              "attachments");
        return NULL;
    }

    mixed = json_pack("{s:s, s:[o]}", "type", "multipart/mixed",
                      "subParts", body);
    if (mixed == NULL) {
        return NULL;
    }

    json_array_foreach(att, i, a) {
        if (!json_is_object(a) || !json_is_string(json_object_get(a, "blobId"))
            || json_object_get(a, "partId") || json_object_get(a, "subParts"))
        {
            json_decref(mixed);
            (void) ngx_http_mail_plus_jmap_refuse(m, "an attachment names a "
                                                  "blob", "attachments");
            return NULL;
        }

        if (json_array_append(json_object_get(mixed, "subParts"), a) != 0) {
            json_decref(mixed);
            return NULL;
        }
    }

    return mixed;
}


/* textBody or htmlBody: one part at most, of its type */

static json_t *
ngx_http_mail_plus_jmap_body_list(ngx_http_mail_plus_jmap_message_t *m,
    json_t *email, const char *property, const char *type)
{
    json_t  *list, *part, *t;

    list = json_object_get(email, property);

    if (list == NULL || json_is_null(list)
        || (json_is_array(list) && json_array_size(list) == 0))
    {
        return NULL;
    }

    part = json_array_get(list, 0);
    t = json_object_get(part, "type");

    if (!json_is_array(list) || json_array_size(list) != 1
        || !json_is_object(part)
        || !json_is_string(json_object_get(part, "partId"))
        || (t && !json_is_null(t)
            && (!json_is_string(t)
                || ngx_strcasecmp((u_char *) json_string_value(t),
                                  (u_char *) type)
                   != 0)))
    {
        (void) ngx_http_mail_plus_jmap_refuse(m, "one part of bodyValues, "
                                              "of its type, is expected",
                                              property);
        return NULL;
    }

    return json_pack("{s:s, s:O}", "type", type, "partId",
                     json_object_get(part, "partId"));
}


/* a part's fields, an empty line and its body */

static ngx_int_t
ngx_http_mail_plus_jmap_part(ngx_http_mail_plus_jmap_message_t *m,
    ngx_http_mail_plus_jmap_out_t *o, json_t *email, json_t *part,
    ngx_uint_t depth)
{
    json_t     *t;
    ngx_str_t   type;

    t = json_object_get(part, "type");

    if (!json_is_object(part) || depth > NGX_HTTP_MAIL_PLUS_JMAP_DEPTH) {
        return ngx_http_mail_plus_jmap_refuse(m, "a part is not an object, "
                                              "or nested too deep",
                                              "bodyStructure");
    }

    if (json_is_string(t)) {
        type.len = json_string_length(t);
        type.data = ngx_pnalloc(m->pool, type.len + 1);
        if (type.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(type.data, json_string_value(t), type.len + 1);

        if (ngx_http_mail_plus_jmap_media_type(&type) != NGX_OK) {
            return ngx_http_mail_plus_jmap_refuse(m, "an invalid media type",
                                                  "bodyStructure");
        }

    } else if (t == NULL || json_is_null(t)) {
        ngx_str_set(&type, "");

    } else {
        return ngx_http_mail_plus_jmap_refuse(m, "an invalid media type",
                                              "bodyStructure");
    }

    if (json_object_get(part, "subParts")) {
        return ngx_http_mail_plus_jmap_multipart(m, o, email, part, &type,
                                                 depth);
    }

    if (json_object_get(part, "partId")) {
        return ngx_http_mail_plus_jmap_text_part(m, o, email, part, &type);
    }

    return ngx_http_mail_plus_jmap_blob_part(m, o, part, &type);
}


static ngx_int_t
ngx_http_mail_plus_jmap_multipart(ngx_http_mail_plus_jmap_message_t *m,
    ngx_http_mail_plus_jmap_out_t *o, json_t *email, json_t *part,
    ngx_str_t *type, ngx_uint_t depth)
{
    u_char     *p, boundary[sizeof("=_") + 32];
    json_t     *subs, *sub;
    size_t      i;
    ngx_int_t   rc;

    subs = json_object_get(part, "subParts");

    if (!json_is_array(subs) || json_array_size(subs) == 0
        || json_array_size(subs) > 1000 || type->len < 10
        || ngx_strncmp(type->data, "multipart/", 10) != 0)
    {
        return ngx_http_mail_plus_jmap_refuse(m, "subParts of a multipart "
                                              "type are expected",
                                              "bodyStructure");
    }

    p = ngx_cpymem(boundary, "=_", 2);

    for (i = 0; i < 3; i++) {
        p = ngx_sprintf(p, "%08xD", (uint32_t) ngx_random());
    }

    *p = '\0';

    if (ngx_http_mail_plus_jmap_puts(o, "Content-Type: ") != NGX_OK
        || ngx_http_mail_plus_jmap_put(o, type->data, type->len) != NGX_OK
        || ngx_http_mail_plus_jmap_puts(o, ";\r\n boundary=\"") != NGX_OK
        || ngx_http_mail_plus_jmap_puts(o, (char *) boundary) != NGX_OK
        || ngx_http_mail_plus_jmap_puts(o, "\"\r\n\r\n") != NGX_OK)
    {
        return NGX_ERROR;
    }

    json_array_foreach(subs, i, sub) {
        if (ngx_http_mail_plus_jmap_puts(o, "--") != NGX_OK
            || ngx_http_mail_plus_jmap_puts(o, (char *) boundary) != NGX_OK
            || ngx_http_mail_plus_jmap_puts(o, "\r\n") != NGX_OK)
        {
            return NGX_ERROR;
        }

        rc = ngx_http_mail_plus_jmap_part(m, o, email, sub, depth + 1);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (ngx_http_mail_plus_jmap_puts(o, "--") != NGX_OK
        || ngx_http_mail_plus_jmap_puts(o, (char *) boundary) != NGX_OK
        || ngx_http_mail_plus_jmap_puts(o, "--\r\n") != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* Content-Disposition with the file name, Content-ID */

static ngx_int_t
ngx_http_mail_plus_jmap_part_fields(ngx_http_mail_plus_jmap_message_t *m,
    ngx_http_mail_plus_jmap_out_t *o, json_t *part)
{
    json_t      *name, *disp, *cid;
    const char  *d;

    name = json_object_get(part, "name");
    disp = json_object_get(part, "disposition");
    cid = json_object_get(part, "cid");

    if ((name && !json_is_null(name)
         && (!json_is_string(name)
             || json_string_length(name) > NGX_HTTP_MAIL_PLUS_JMAP_NAME
             || ngx_strlen(json_string_value(name))
                != json_string_length(name)))
        || (disp && !json_is_null(disp) && !json_is_string(disp))
        || (cid && !json_is_null(cid)
            && (!json_is_string(cid)
                || ngx_http_mail_plus_jmap_msg_id(json_string_value(cid))
                   != NGX_OK)))
    {
        return ngx_http_mail_plus_jmap_refuse(m, "an invalid name, "
                                              "disposition or cid",
                                              "bodyStructure");
    }

    d = json_is_string(disp) ? json_string_value(disp) : NULL;

    if (d && ngx_strcmp(d, "inline") != 0 && ngx_strcmp(d, "attachment") != 0)
    {
        return ngx_http_mail_plus_jmap_refuse(m, "the disposition is "
                                              "\"inline\" or \"attachment\"",
                                              "bodyStructure");
    }

    if (d == NULL && json_is_string(name)) {
        d = "attachment";
    }

    if (d) {
        if (ngx_http_mail_plus_jmap_puts(o, "Content-Disposition: ") != NGX_OK
            || ngx_http_mail_plus_jmap_puts(o, d) != NGX_OK
            || (json_is_string(name)
                && ngx_http_mail_plus_jmap_param(o, "filename",
                                                 json_string_value(name))
                   != NGX_OK)
            || ngx_http_mail_plus_jmap_puts(o, "\r\n") != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (json_is_string(cid)
        && (ngx_http_mail_plus_jmap_puts(o, "Content-ID: <") != NGX_OK
            || ngx_http_mail_plus_jmap_puts(o, json_string_value(cid))
               != NGX_OK
            || ngx_http_mail_plus_jmap_puts(o, ">\r\n") != NGX_OK))
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* a text of bodyValues: UTF-8, quoted-printable */

static ngx_int_t
ngx_http_mail_plus_jmap_text_part(ngx_http_mail_plus_jmap_message_t *m,
    ngx_http_mail_plus_jmap_out_t *o, json_t *email, json_t *part,
    ngx_str_t *type)
{
    json_t      *id, *bv, *value;
    ngx_int_t    rc;
    const char  *s;

    id = json_object_get(part, "partId");

    if (type->len == 0) {
        ngx_str_set(type, "text/plain");
    }

    if (!json_is_string(id) || json_object_get(part, "blobId")
        || type->len < 5 || ngx_strncmp(type->data, "text/", 5) != 0)
    {
        return ngx_http_mail_plus_jmap_refuse(m, "a part of bodyValues is "
                                              "of a text type",
                                              "bodyStructure");
    }

    s = json_string_value(id);
    bv = json_object_get(json_object_get(email, "bodyValues"), s);
    value = json_object_get(bv, "value");

    if (s[0] == '\0' && bv == NULL) {
        value = NULL;

    } else if (!json_is_string(value)
               || json_is_true(json_object_get(bv, "isEncodingProblem"))
               || json_is_true(json_object_get(bv, "isTruncated")))
    {
        return ngx_http_mail_plus_jmap_refuse(m, "a partId without its "
                                              "value in bodyValues",
                                              "bodyValues");
    }

    if (ngx_http_mail_plus_jmap_puts(o, "Content-Type: ") != NGX_OK
        || ngx_http_mail_plus_jmap_put(o, type->data, type->len) != NGX_OK
        || ngx_http_mail_plus_jmap_puts(o, "; charset=utf-8\r\n"
                                        "Content-Transfer-Encoding: "
                                        "quoted-printable\r\n")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_mail_plus_jmap_part_fields(m, o, part);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_mail_plus_jmap_puts(o, "\r\n") != NGX_OK) {
        return NGX_ERROR;
    }

    if (value == NULL) {
        return NGX_OK;
    }

    return ngx_http_mail_plus_jmap_qp(o, (u_char *) json_string_value(value),
                                      json_string_length(value));
}


/* a blob: base64 */

static ngx_int_t
ngx_http_mail_plus_jmap_blob_part(ngx_http_mail_plus_jmap_message_t *m,
    ngx_http_mail_plus_jmap_out_t *o, json_t *part, ngx_str_t *type)
{
    json_t     *id;
    ngx_int_t   rc;
    ngx_str_t   blob_id, bytes;

    id = json_object_get(part, "blobId");

    if (!json_is_string(id) || m->blob == NULL) {
        return ngx_http_mail_plus_jmap_refuse(m, "a part names a blob, a "
                                              "value or subParts",
                                              "bodyStructure");
    }

    blob_id.data = (u_char *) json_string_value(id);
    blob_id.len = json_string_length(id);

    rc = m->blob(m->data, &blob_id, &bytes);

    if (rc == NGX_DECLINED) {
        m->type = "blobNotFound";
        m->error = "no such blob";
        m->property = NULL;
        m->blob_id = blob_id;
        return NGX_DECLINED;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    if (type->len == 0) {
        ngx_str_set(type, "application/octet-stream");
    }

    if (type->len >= 10 && ngx_strncmp(type->data, "multipart/", 10) == 0) {
        return ngx_http_mail_plus_jmap_refuse(m, "a blob of a multipart "
                                              "type", "bodyStructure");
    }

    if (ngx_http_mail_plus_jmap_puts(o, "Content-Type: ") != NGX_OK
        || ngx_http_mail_plus_jmap_put(o, type->data, type->len) != NGX_OK
        || (json_is_string(json_object_get(part, "name"))
            && ngx_http_mail_plus_jmap_param(o, "name",
                          json_string_value(json_object_get(part, "name")))
               != NGX_OK)
        || ngx_http_mail_plus_jmap_puts(o, "\r\nContent-Transfer-Encoding: "
                                        "base64\r\n")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_mail_plus_jmap_part_fields(m, o, part);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_mail_plus_jmap_puts(o, "\r\n") != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_mail_plus_jmap_base64(o, &bytes);
}


/*
 * ";\r\n name=\"value\"" for printable ASCII, else RFC 2231's
 * ";\r\n name*=utf-8''%C3%A9"
 */

static ngx_int_t
ngx_http_mail_plus_jmap_param(ngx_http_mail_plus_jmap_out_t *o,
    const char *name, const char *value)
{
    u_char      *p, *s, ch, buf[3 * NGX_HTTP_MAIL_PLUS_JMAP_NAME + 2];
    ngx_uint_t   plain;

    plain = 1;

    for (s = (u_char *) value; *s; s++) {
        if (*s < 0x20 || *s >= 0x7f) {
            plain = 0;
        }
    }

    if (ngx_http_mail_plus_jmap_puts(o, ";\r\n ") != NGX_OK
        || ngx_http_mail_plus_jmap_puts(o, name) != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = buf;

    if (plain) {
        *p++ = '"';

        for (s = (u_char *) value; *s; s++) {
            if (*s == '"' || *s == '\\') {
                *p++ = '\\';
            }

            *p++ = *s;
        }

        *p++ = '"';

        return ngx_http_mail_plus_jmap_puts(o, "=") != NGX_OK ? NGX_ERROR
               : ngx_http_mail_plus_jmap_put(o, buf, p - buf);
    }

    for (s = (u_char *) value; *s; s++) {
        ch = *s;

        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
            || (ch >= '0' && ch <= '9') || ch == '.' || ch == '-'
            || ch == '_')
        {
            *p++ = ch;

        } else {
            p = ngx_sprintf(p, "%%%02XD", (ngx_uint_t) ch);
        }
    }

    if (ngx_http_mail_plus_jmap_puts(o, "*=utf-8''") != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_mail_plus_jmap_put(o, buf, p - buf);
}


/*
 * unstructured text (a subject, a field's value): as it is when it is
 * printable ASCII of short words, folded at spaces; else encoded words
 */

static ngx_int_t
ngx_http_mail_plus_jmap_text(ngx_http_mail_plus_jmap_out_t *o, size_t col,
    const char *s)
{
    u_char      *p, *word, *end;
    size_t       len;
    ngx_uint_t   plain;

    len = ngx_strlen(s);
    end = (u_char *) s + len;
    plain = 1;
    word = (u_char *) s;

    for (p = (u_char *) s; p < end; p++) {
        if (*p < 0x20 || *p >= 0x7f
            || (*p == '=' && p + 1 < end && p[1] == '?'))
        {
            plain = 0;
            break;
        }

        if (*p == ' ') {
            word = p + 1;

        } else if (p - word > NGX_HTTP_MAIL_PLUS_JMAP_FOLD - 10) {
            plain = 0;
            break;
        }
    }

    if (len && (s[0] == ' ' || end[-1] == ' ')) {
        plain = 0;
    }

    if (!plain) {
        if (ngx_http_mail_plus_jmap_words(o, (u_char *) s, len) != NGX_OK) {
            return NGX_ERROR;
        }

        return ngx_http_mail_plus_jmap_puts(o, "\r\n");
    }

    p = (u_char *) s;

    while (p < end) {
        word = ngx_strlchr(p + 1, end, ' ');
        if (word == NULL) {
            word = end;
        }

        if (col + (word - p) > NGX_HTTP_MAIL_PLUS_JMAP_FOLD
            && p != (u_char *) s)
        {
            if (ngx_http_mail_plus_jmap_puts(o, "\r\n") != NGX_OK) {
                return NGX_ERROR;
            }

            col = 0;
        }

        if (ngx_http_mail_plus_jmap_put(o, p, word - p) != NGX_OK) {
            return NGX_ERROR;
        }

        col += word - p;
        p = word;
    }

    return ngx_http_mail_plus_jmap_puts(o, "\r\n");
}


/* RFC 2047 "B" words of UTF-8, cut between characters, one a line */

static ngx_int_t
ngx_http_mail_plus_jmap_words(ngx_http_mail_plus_jmap_out_t *o, u_char *s,
    size_t len)
{
    u_char     *end, buf[sizeof("=?utf-8?B?" "?=") + 64];
    size_t      n;
    ngx_str_t   src, dst;

    end = s + len;

    if (len == 0) {
        return NGX_OK;
    }

    while (s < end) {
        n = ngx_min((size_t) (end - s), NGX_HTTP_MAIL_PLUS_JMAP_WORD);

        /* not in the middle of a character */

        while (s + n < end && n > 1 && (s[n] & 0xc0) == 0x80) {
            n--;
        }

        src.data = s;
        src.len = n;
        dst.data = buf + sizeof("=?utf-8?B?") - 1;

        ngx_memcpy(buf, "=?utf-8?B?", sizeof("=?utf-8?B?") - 1);
        ngx_encode_base64(&dst, &src);
        ngx_memcpy(dst.data + dst.len, "?=", 2);

        if ((s != end - len && ngx_http_mail_plus_jmap_puts(o, "\r\n ")
                               != NGX_OK)
            || ngx_http_mail_plus_jmap_put(o, buf,
                                           sizeof("=?utf-8?B?" "?=") - 1
                                           + dst.len)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        s += n;
    }

    return NGX_OK;
}


/* a display name: atoms as they are, else a quoted string, else words */

static ngx_int_t
ngx_http_mail_plus_jmap_phrase(ngx_http_mail_plus_jmap_out_t *o,
    const char *s)
{
    u_char      *p, buf[2 * NGX_HTTP_MAIL_PLUS_JMAP_NAME + 2];
    size_t       len;
    ngx_uint_t   atoms, quoted;

    len = ngx_strlen(s);
    atoms = 1;
    quoted = 1;

    for (p = (u_char *) s; *p; p++) {
        if (*p < 0x20 || *p >= 0x7f) {
            quoted = 0;
        }

        if (!ngx_http_mail_plus_jmap_atext(*p) && *p != ' ') {
            atoms = 0;
        }
    }

    if (len > NGX_HTTP_MAIL_PLUS_JMAP_FOLD - 10 || s[0] == ' '
        || s[len - 1] == ' ' || ngx_strstr(s, "=?") || ngx_strstr(s, "  "))
    {
        atoms = 0;
        quoted = 0;
    }

    if (atoms) {
        return ngx_http_mail_plus_jmap_put(o, s, len);
    }

    if (!quoted) {
        return ngx_http_mail_plus_jmap_words(o, (u_char *) s, len);
    }

    p = buf;
    *p++ = '"';

    for ( /* void */ ; *s; s++) {
        if (*s == '"' || *s == '\\') {
            *p++ = '\\';
        }

        *p++ = *s;
    }

    *p++ = '"';

    return ngx_http_mail_plus_jmap_put(o, buf, p - buf);
}


/* quoted-printable (RFC 2045 6.7) of text whose lines end in any way */

static ngx_int_t
ngx_http_mail_plus_jmap_qp(ngx_http_mail_plus_jmap_out_t *o, u_char *p,
    size_t len)
{
    u_char  *end, *q, line[NGX_HTTP_MAIL_PLUS_JMAP_FOLD + 8];
    size_t   n;

    end = p + len;
    q = line;

    while (p < end) {

        if (*p == '\r' || *p == '\n') {
            if (*p == '\r' && p + 1 < end && p[1] == '\n') {
                p++;
            }

            p++;

            if (q > line && (q[-1] == ' ' || q[-1] == '\t')) {
                n = q[-1];
                q = ngx_sprintf(q - 1, "=%02XD", n);
            }

            *q++ = CR; *q++ = LF;

            if (ngx_http_mail_plus_jmap_put(o, line, q - line) != NGX_OK) {
                return NGX_ERROR;
            }

            q = line;
            continue;
        }

        if (q - line > NGX_HTTP_MAIL_PLUS_JMAP_FOLD - 4) {
            *q++ = '='; *q++ = CR; *q++ = LF;

            if (ngx_http_mail_plus_jmap_put(o, line, q - line) != NGX_OK) {
                return NGX_ERROR;
            }

            q = line;
        }

        if ((*p >= 33 && *p <= 126 && *p != '=')
            || ((*p == ' ' || *p == '\t') && q > line))
        {
            *q++ = *p;

        } else {
            q = ngx_sprintf(q, "=%02XD", (ngx_uint_t) *p);
        }

        p++;
    }

    if (q > line && (q[-1] == ' ' || q[-1] == '\t')) {
        n = q[-1];
        q = ngx_sprintf(q - 1, "=%02XD", n);
    }

    *q++ = CR; *q++ = LF;

    return ngx_http_mail_plus_jmap_put(o, line, q - line);
}


static ngx_int_t
ngx_http_mail_plus_jmap_base64(ngx_http_mail_plus_jmap_out_t *o,
    ngx_str_t *bytes)
{
    u_char     line[NGX_HTTP_MAIL_PLUS_JMAP_FOLD + 2];
    size_t     i;
    ngx_str_t  src, dst;

    for (i = 0; i < bytes->len; i += 57) {
        src.data = bytes->data + i;
        src.len = ngx_min(bytes->len - i, 57);
        dst.data = line;

        ngx_encode_base64(&dst, &src);

        line[dst.len] = CR;
        line[dst.len + 1] = LF;

        if (ngx_http_mail_plus_jmap_put(o, line, dst.len + 2) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mail_plus_jmap_put(ngx_http_mail_plus_jmap_out_t *o, const void *p,
    size_t len)
{
    u_char  *data;
    size_t   size;

    if (o->len + len > o->size) {
        size = ngx_max(2 * o->size, o->len + len);

        data = ngx_pnalloc(o->pool, size);
        if (data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(data, o->data, o->len);
        ngx_pfree(o->pool, o->data);

        o->data = data;
        o->size = size;
    }

    ngx_memcpy(o->data + o->len, p, len);
    o->len += len;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mail_plus_jmap_puts(ngx_http_mail_plus_jmap_out_t *o, const char *s)
{
    return ngx_http_mail_plus_jmap_put(o, s, ngx_strlen(s));
}


/* ftext of RFC 5322 3.6.8, and not a field the builder sets itself */

static ngx_int_t
ngx_http_mail_plus_jmap_field_name(const char *name, size_t len)
{
    size_t      i;
    ngx_uint_t  k;

    static const char  *own[] = {
        "From", "Sender", "Reply-To", "To", "Cc", "Bcc", "Subject", "Date",
        "Message-ID", "In-Reply-To", "References", "MIME-Version",
        "Content-Type", "Content-Transfer-Encoding", "Content-Disposition",
        "Content-ID", NULL };

    if (len == 0 || len > 76) {
        return NGX_ERROR;
    }

    for (i = 0; i < len; i++) {
        if (name[i] < 33 || name[i] > 126 || name[i] == ':') {
            return NGX_ERROR;
        }
    }

    for (k = 0; own[k]; k++) {
        if (ngx_strlen(own[k]) == len
            && ngx_strncasecmp((u_char *) own[k], (u_char *) name, len) == 0)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_mail_plus_jmap_addr_spec(ngx_str_t *addr)
{
    u_char      *p, *at, *end, ch;
    ngx_uint_t   label;

    if (addr->len == 0 || addr->len > 254) {
        return NGX_ERROR;
    }

    end = addr->data + addr->len;
    at = NULL;

    for (p = addr->data; p < end; p++) {
        if (*p == '@') {
            at = p;
        }
    }

    if (at == NULL || at == addr->data || at - addr->data > 64
        || at + 1 == end || addr->data[0] == '.' || at[-1] == '.')
    {
        return NGX_ERROR;
    }

    for (p = addr->data; p < at; p++) {
        if (!ngx_http_mail_plus_jmap_atext(*p)
            && !(*p == '.' && p[1] != '.'))
        {
            return NGX_ERROR;
        }
    }

    label = 0;

    for (p = at + 1; p < end; p++) {
        ch = *p;

        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
            || (ch >= '0' && ch <= '9'))
        {
            label++;

        } else if (ch == '-' && label && p + 1 < end && p[1] != '.') {
            label++;

        } else if (ch == '.' && label && p + 1 < end) {
            label = 0;

        } else {
            return NGX_ERROR;
        }

        if (label > 63) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_mail_plus_jmap_flags(ngx_pool_t *pool, json_t *keywords,
    ngx_str_t *flags)
{
    u_char      *p, ch;
    size_t       len;
    json_t      *v;
    ngx_uint_t   i;
    const char  *key;

    static const char  *system[] = {
        "$seen", "\\Seen", "$flagged", "\\Flagged", "$answered",
        "\\Answered", "$draft", "\\Draft", NULL };

    if (keywords && !json_is_null(keywords) && !json_is_object(keywords)) {
        return NGX_DECLINED;
    }

    len = 2;

    json_object_foreach(keywords, key, v) {
        len += ngx_strlen(key) + 1;
    }

    flags->data = ngx_pnalloc(pool, len);
    if (flags->data == NULL) {
        return NGX_ERROR;
    }

    p = flags->data;
    *p++ = '(';

    json_object_foreach(keywords, key, v) {

        if (!json_is_true(v) || key[0] == '\0' || ngx_strlen(key) > 255) {
            return NGX_DECLINED;
        }

        if (p[-1] != '(') {
            *p++ = ' ';
        }

        for (i = 0; system[i]; i += 2) {
            if (ngx_strcasecmp((u_char *) key, (u_char *) system[i]) == 0) {
                break;
            }
        }

        if (system[i]) {
            p = ngx_cpymem(p, system[i + 1], ngx_strlen(system[i + 1]));
            continue;
        }

        for ( /* void */ ; *key; key++) {
            ch = *key;

            if (ch <= 0x20 || ch >= 0x7f || ch == '(' || ch == ')'
                || ch == '{' || ch == ']' || ch == '%' || ch == '*'
                || ch == '"' || ch == '\\')
            {
                return NGX_DECLINED;
            }

            *p++ = ngx_tolower(ch);
        }
    }

    *p++ = ')';

    flags->len = p - flags->data;

    return NGX_OK;
}


ngx_int_t
ngx_http_mail_plus_jmap_parse_date(const char *s, time_t *t,
    ngx_int_t *offset)
{
    u_char     *p;
    ngx_int_t   n[6], i, sign;

    static const char  pattern[] = "dddd-dd-ddTdd:dd:dd";

    p = (u_char *) s;

    for (i = 0; pattern[i]; i++) {
        if (pattern[i] == 'd' ? (p[i] < '0' || p[i] > '9')
                              : (ngx_toupper(p[i]) != (u_char) pattern[i]))
        {
            return NGX_DECLINED;
        }
    }

    n[0] = ngx_atoi(p, 4);
    n[1] = ngx_atoi(p + 5, 2);
    n[2] = ngx_atoi(p + 8, 2);
    n[3] = ngx_atoi(p + 11, 2);
    n[4] = ngx_atoi(p + 14, 2);
    n[5] = ngx_atoi(p + 17, 2);

    p += sizeof(pattern) - 1;

    if (*p == '.') {
        do { p++; } while (*p >= '0' && *p <= '9');
    }

    if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
        *offset = 0;

    } else if ((*p == '+' || *p == '-') && ngx_strlen(p) == 6
               && p[3] == ':')
    {
        sign = (*p == '-') ? -1 : 1;
        i = ngx_atoi(p + 1, 2);
        *offset = ngx_atoi(p + 4, 2);

        if (i == NGX_ERROR || *offset == NGX_ERROR || i > 23 || *offset > 59) {
            return NGX_DECLINED;
        }

        *offset = sign * (i * 60 + *offset);

    } else {
        return NGX_DECLINED;
    }

    if (n[0] < 1970 || n[1] < 1 || n[1] > 12 || n[2] < 1 || n[2] > 31
        || n[3] > 23 || n[4] > 59 || n[5] > 60)
    {
        return NGX_DECLINED;
    }

    /* days from the civil date, as in RFC 3339's appendix */

    i = n[1] <= 2 ? n[0] - 1 : n[0];

    *t = (time_t) (365 * i + i / 4 - i / 100 + i / 400
                   + (153 * (n[1] + (n[1] > 2 ? -3 : 9)) + 2) / 5
                   + n[2] - 1 - 719468) * 86400
         + n[3] * 3600 + n[4] * 60 + n[5] - *offset * 60;

    return NGX_OK;
}


ngx_int_t
ngx_http_mail_plus_jmap_media_type(ngx_str_t *type)
{
    u_char      ch;
    size_t      i;
    ngx_uint_t  slash, tok;

    if (type->len == 0 || type->len > 127) {
        return NGX_ERROR;
    }

    slash = 0;
    tok = 0;

    for (i = 0; i < type->len; i++) {
        ch = ngx_tolower(type->data[i]);
        type->data[i] = ch;

        if (ch == '/') {
            if (slash || tok == 0) {
                return NGX_ERROR;
            }

            slash = 1;
            tok = 0;
            continue;
        }

        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')
              || ch == '!' || ch == '#' || ch == '$' || ch == '&'
              || ch == '-' || ch == '^' || ch == '_' || ch == '.'
              || ch == '+'))
        {
            return NGX_ERROR;
        }

        tok++;
    }

    return (slash && tok) ? NGX_OK : NGX_ERROR;
}


static ngx_uint_t
ngx_http_mail_plus_jmap_atext(u_char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
           || (ch >= '0' && ch <= '9')
           || (ch != 0 && ngx_strchr("!#$%&'*+-/=?^_`{|}~", ch) != NULL);
}


static ngx_int_t
ngx_http_mail_plus_jmap_refuse(ngx_http_mail_plus_jmap_message_t *m,
    const char *error, const char *property)
{
    m->type = "invalidProperties";
    m->error = error;
    m->property = property;

    return NGX_DECLINED;
}
