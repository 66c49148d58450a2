"""The catalogue of problem messages, in the Chinese an office forwards to an assessor verbatim.

Every finding about a returned workbook is a `Problem` record (code, file, sheet, cell, value,
message); the text of each code is written once, here.
"""

from __future__ import annotations

from dataclasses import dataclass

ERROR = "error"
WARNING = "warning"

# code: (severity, template). Templates are formatted with the keyword arguments of `problem()`.
CATALOGUE: dict[str, tuple[str, str]] = {
    # the file as a whole
    "empty_file": (ERROR, "文件是空的（0 字节），请重新发送填好的评分表。"),
    "not_spreadsheet": (ERROR, "这不是 Excel/WPS 电子表格文件（{detail}），请发送系统下发的评分表（.xlsx）。"),
    "encrypted": (ERROR, "文件设置了密码（已加密），无法读取。请在 Excel 或 WPS 中取消密码后另存，再重新发送。"),
    "read_failed": (ERROR, "文件无法读取（读取时出错），请用 Excel 或 WPS 打开后另存为 .xlsx 再发送。"),
    "old_format": (ERROR, "这是旧版 Excel 格式（Excel 95 或更早），请用 Excel 或 WPS 打开后另存为 .xlsx 再发送。"),
    "too_big": (ERROR, "文件中的工作表过大（{detail}），不是系统下发的评分表，未读取。请使用系统下发的评分表填写。"),
    "corrupt": (ERROR, "文件已损坏或不完整，无法打开（{detail}），请重新保存后发送。"),
    "too_large": (ERROR, "文件过大（{detail}），超出上限，未读取。请发送系统下发的评分表。"),
    "zip_bomb": (ERROR, "文件内容异常（{detail}），为安全起见未读取。请重新保存后发送。"),
    "read_crashed": (ERROR, "文件无法读取（读取时出错），请用 Excel 或 WPS 打开后另存为 .xlsx 再发送。"),
    "read_timeout": (ERROR, "文件读取超时（超过 {detail}），未读取。请用 Excel 或 WPS 打开后另存为 .xlsx 再发送。"),
    "read_memory": (ERROR, "文件读取所需内存超出上限（{detail}），未读取。请用 Excel 或 WPS 打开后另存为 .xlsx 再发送。"),
    "too_many_sheets": (ERROR, "文件中工作表过多（{detail}），不是系统下发的评分表。"),
    "no_identity": (ERROR, "无法识别这份评分表：找不到隐藏的表单信息，各工作表顶部也没有评估对象和评估人信息。请使用系统下发的评分表填写。"),
    "meta_tampered": (ERROR, "表单信息已被改动（校验不符），无法确认来源。请使用系统下发的原始评分表重新填写。"),
    "forged_form": (ERROR, "非本办公室下发的评分表，或表格标识已被改动，未计入。请使用办公室下发的评分表。"),
    "unsigned_form": (WARNING, "这份评分表是旧版表格，没有办公室签名，无法确认来源；已照常收取。"),
    "unsigned_refused": (ERROR, "这份评分表没有办公室签名，无法确认来源，未计入。请使用办公室下发的评分表。"),
    "no_office_key": (WARNING, "本工作区还没有办公室密钥，无法确认这份评分表是否由本办公室下发；已照常收取。"),
    "wrong_system": (ERROR, "这是“{found}”的评分表，本轮收取的是“{expected}”。"),
    "wrong_period": (ERROR, "这是 {found} 期的评分表，本轮收取的是 {expected} 期。{where}"),
    "wrong_stage": (ERROR, "这是{found}阶段的评分表，本轮是{expected}阶段。{where}"),
    "old_structure": (ERROR, "评分表所用的指标体系版本已过期（结构校验 {found}，当前为 {expected}），请使用新下发的评分表。"),
    "unknown_assessor": (ERROR, "评估人编号 {found} 不在名单中。"),
    "no_subject_sheets": (ERROR, "文件中找不到任何评估对象工作表（可能被删除或改名），请使用系统下发的评分表填写。"),
    "missing_sheet": (WARNING, "表单中评估对象 {found} 的工作表不见了，该对象本次未收到评分。"),
    "duplicate_file": (WARNING, "与已收取的文件 {detail} 内容完全相同，不重复计入。"),
    "duplicate_of_rejected": (ERROR, "与文件 {detail} 内容相同，{detail} 未通过校验，本文件同样未计入。"),
    "unknown_sender": (WARNING, "发件人不在名单：{detail} 不是名单中任何评估人的邮箱；文件已照常检查，按表格本身的信息识别评估人。"),
    "same_scores": (WARNING, "与文件 {detail} 的评分相同，是同一份评分，不重复计入。"),
    # one subject sheet
    "sheet_unreadable": (ERROR, "工作表无法读取（{detail}），本表未计入。"),
    "sheet_too_long": (ERROR, "工作表行数过多（{detail}），不是系统下发的评分表，本表未计入。"),
    "unknown_subject": (ERROR, "评估对象编号 {found} 不在名单中，本表未计入。"),
    "not_assigned": (ERROR, "评估对象 {found} 未分配给评估人 {assessor}，本表未计入。"),
    "duplicate_subject": (ERROR, "评估对象 {found} 在本文件中出现了不止一次（另见工作表“{detail}”），这些表均未计入，请只保留一张后重新发送。"),
    "identity_mismatch": (ERROR, "工作表顶部的{detail}与表单信息不一致（表中为 {found}，应为 {expected}），本表未计入。"),
    "no_header": (ERROR, "找不到表头行（编号、得分），本表未计入。请勿修改表头。"),
    "missing_item": (ERROR, "缺少指标 {found}（{detail}）的评分行，本表未计入。请勿删除指标行。"),
    "duplicate_item": (ERROR, "指标 {found} 出现了不止一行（另见 {detail}），本表未计入。"),
    "unknown_item": (WARNING, "“{found}”不是本指标体系的指标编号，该行已忽略。"),
    "blank_score": (ERROR, "{item} 的得分未填写，本表未计入。"),
    "sheet_blank": (ERROR, "本表 {detail} 项得分均未填写，本表未计入。请填写后重新发送。"),
    "not_a_number": (ERROR, "{item} 的得分“{found}”不是数字，本表未计入。请填写 0 到 {max} 之间的数字。"),
    "error_value": (ERROR, "{item} 的得分是错误值 {found}，本表未计入。请直接填写数字。"),
    "formula_no_value": (ERROR, "{item} 的得分是公式 {found}，文件里没有它的计算结果，本表未计入。请直接填写数字。"),
    "out_of_range": (ERROR, "{item} 的得分 {found} 超出范围，应在 0 到 {max} 之间，本表未计入。"),
    "normalised": (WARNING, "{item} 的得分“{found}”已按 {score} 计入（{detail}）。"),
    "missing_reason": (WARNING, "{item} 得分 {found} 低于满分 {max}，请在备注中说明扣分理由。{detail}"),
    "remark_cut": (WARNING, "{item} 的备注过长（{detail} 字），只保留前 {limit} 字。"),
    "superseded": (WARNING, "{found} 的评分已被较新的文件 {detail} 替换。"),
    "conflict": (ERROR, "{found} 还有一份评分不同的文件 {detail}，两份的保存时间相同（{saved}），无法判断以哪份为准，"
                        "均未计入。请与评估人确认后，从收取文件夹中移除不要的那份，再重新收取。"),
    # the same conflict, worded for the assessor's letter (the office's wording is `conflict`)
    "conflict_return": (ERROR, "{found} 收到两份评分不同的文件（{detail}），保存时间相同，无法判断以哪份为准，均未计入。"
                               "请确认后，将正确的那份重新保存并发送。"),
    "declared_conflict": (WARNING, "评估人对 {found} 声明回避（原因：{detail}），该表不评分、不计入；办公室将另行安排评估人。"),
    "problem_fixed": (WARNING, "已更正：{found} 已由 {detail} 重新提交并通过校验。"),
}

# Parts of messages, filled in where a template says so.
PHRASES: dict[str, str] = {
    "put_in_folder": "请放入 {folder} 文件夹，收取该期时计入。",
}


@dataclass(frozen=True)
class Problem:
    """One finding about a returned workbook: where it is, what was found, what it means."""

    code: str
    severity: str
    message: str
    file: str = ""
    sheet: str = ""
    cell: str = ""
    value: str = ""
    technical: str = ""  # a library's own words, for support only; never part of `message`


VALUE_QUOTE = 60  # characters of a value quoted in a message


def problem(code: str, *, file: str = "", sheet: str = "", cell: str = "", value: object = "", technical: str = "",
            **fields) -> Problem:
    """Build a Problem from the catalogue; `fields` fill the template. `technical` keeps a library's
    own (English) words for support, apart from the Chinese message an office forwards."""
    severity, template = CATALOGUE[code]
    shown = "" if value is None else str(value)
    # A hostile cell can hold millions of characters: the message quotes only its start.
    quoted = shown if len(shown) <= VALUE_QUOTE else f"{shown[:VALUE_QUOTE]}…（共 {len(shown)} 字）"
    text = template.format_map(_Defaults(found=quoted, **fields))
    return Problem(code, severity, text, file=file, sheet=sheet, cell=cell, value=shown[:200], technical=technical[:500])


class _Defaults(dict):
    def __missing__(self, key: str) -> str:
        return ""
