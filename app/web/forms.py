"""WTForms shared by pages. Every form carries Flask-WTF's CSRF token."""
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=255)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


class EmptyForm(FlaskForm):
    """A CSRF-only form for action buttons (log out, start, stop, ...)."""
